-- wrk -s loadtests/skills_infer.lua: POST one skills request body (from BODY_FILE) on every call.
local f = assert(io.open(os.getenv("BODY_FILE") or "loadtests/body.json"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
