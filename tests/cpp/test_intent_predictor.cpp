// Unit tests of the C++ client, no server: parsing, the retry policy, fallbacks, batching and thread safety,
// through a scripted transport.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "classification/IntentPredictor.h"
#include "http_date.h"
#include "starting_gate.h"

using classification::BatchOutcome;
using classification::ClientConfig;
using classification::HttpResult;
using classification::HttpTransport;
using classification::IntentPrediction;
using classification::IntentPredictor;
using classification::RequestRejected;
using classification::ServiceUnavailable;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr int kCouldntConnect = 7;   // CURLE_COULDNT_CONNECT
constexpr int kTimedOut = 28;        // CURLE_OPERATION_TIMEDOUT
constexpr int kGotNothing = 52;      // CURLE_GOT_NOTHING
constexpr int kSslConnectError = 35;  // CURLE_SSL_CONNECT_ERROR: not retried

json answer(const std::string& intent = "local", const std::string& variant = "classic") {
    return {{"intent", intent},
            {"confidence", 0.91},
            {"verticals", json::array({{{"vertical", "health"}, {"score", 0.99}}})},
            {"variant", variant},
            {"model_version", "v1.0.0"},
            {"fallback", false},
            {"cached", false}};
}

HttpResult answered(long code, std::string body) {
    HttpResult result;
    result.status = code;
    result.body = std::move(body);
    return result;
}
HttpResult ok(const json& body) { return answered(200, body.dump()); }
HttpResult status(long code, const json& body = json::object()) { return answered(code, body.dump()); }
HttpResult failure(int curl_code, bool timed_out = false) {
    HttpResult result;
    result.transport_error = curl_code;
    result.transport_message = "transport failure";
    result.timed_out = timed_out;
    return result;
}
HttpResult asking_to_wait(long code, std::chrono::milliseconds retry_after) {
    HttpResult result = status(code, {{"error", "the worker is at its bound"}, {"code", "overloaded"}});
    result.retry_after = retry_after;
    return result;
}

// Answers from a script (the last one repeats), or from a function; records every request.
class ScriptedTransport : public HttpTransport {
public:
    explicit ScriptedTransport(std::deque<HttpResult> script) : script_(std::move(script)) {}
    explicit ScriptedTransport(std::function<HttpResult(const std::string&, const std::string&)> answer)
        : answer_(std::move(answer)) {}

    HttpResult post(const std::string& path, const std::string& body,
                    const std::map<std::string, std::string>& headers) override {
        std::lock_guard<std::mutex> lock(mutex_);
        paths.push_back(path);
        bodies.push_back(body);
        last_headers = headers;
        if (answer_) return answer_(path, body);
        HttpResult result = script_.front();
        if (script_.size() > 1) script_.pop_front();
        return result;
    }

    std::vector<std::string> paths;
    std::vector<std::string> bodies;
    std::map<std::string, std::string> last_headers;

private:
    std::mutex mutex_;
    std::deque<HttpResult> script_;
    std::function<HttpResult(const std::string&, const std::string&)> answer_;
};

ClientConfig fast_config() {
    ClientConfig config;
    config.retry_backoff = 1ms;
    config.max_retry_backoff = 2ms;
    return config;
}

struct Scripted {
    ScriptedTransport* transport;
    std::unique_ptr<IntentPredictor> predictor;
};

Scripted scripted(std::deque<HttpResult> script, ClientConfig config = fast_config()) {
    auto transport = std::make_unique<ScriptedTransport>(std::move(script));
    ScriptedTransport* raw = transport.get();
    return {raw, std::make_unique<IntentPredictor>(config, std::move(transport))};
}

// Answers batch requests with one result per text ("local" for every text, an error for empty ones).
HttpResult batch_answer(const std::string&, const std::string& body) {
    json results = json::array();
    const json request = json::parse(body);  // kept alive: the loop below iterates over a part of it
    for (const auto& text : request.at("texts")) {
        if (text.get<std::string>().empty()) {
            results.push_back({{"index", results.size()}, {"error", {{"code", "invalid_text"}, {"message", "texts[i]: empty"}}}});
        } else {
            results.push_back(answer("local"));
        }
    }
    return ok({{"results", results}, {"succeeded", 0}, {"failed", 0}});
}

}  // namespace

// --- parsing

TEST(Parsing, APredictionCarriesEveryFieldOfTheServicesAnswer) {
    IntentPrediction p = classification::detail::parse_prediction(answer("navigational", "ensemble").dump());
    EXPECT_EQ(p.intent, "navigational");
    EXPECT_DOUBLE_EQ(p.confidence, 0.91);
    ASSERT_EQ(p.verticals.size(), 1u);
    EXPECT_EQ(p.verticals[0].vertical, "health");
    EXPECT_EQ(p.variant, "ensemble");
    EXPECT_EQ(p.model_version.value(), "v1.0.0");
    EXPECT_FALSE(p.fallback);
    EXPECT_FALSE(p.from_client_fallback);
}

TEST(Parsing, ANullModelVersionIsAbsent) {
    json body = answer("informational", "default");
    body["model_version"] = nullptr;
    body["fallback"] = true;
    IntentPrediction p = classification::detail::parse_prediction(body.dump());
    EXPECT_FALSE(p.model_version.has_value());
    EXPECT_TRUE(p.fallback);
}

TEST(Parsing, AMalformedAnswerThrows) {
    EXPECT_THROW(classification::detail::parse_prediction("{\"intent\": 3}"), std::exception);
    EXPECT_THROW(classification::detail::parse_prediction("not json"), std::exception);
}

TEST(Parsing, BatchResultsKeepTheirOrderAndPerTextErrors) {
    json body = {{"results", json::array({answer("local"), {{"index", 1}, {"error", {{"code", "invalid_text"}, {"message", "texts[1]: empty"}}}}})}};
    auto outcomes = classification::detail::parse_batch(body.dump(), 2);
    ASSERT_EQ(outcomes.size(), 2u);
    EXPECT_TRUE(outcomes[0].ok());
    EXPECT_FALSE(outcomes[1].ok());
    EXPECT_EQ(outcomes[1].error_code, "invalid_text");
    EXPECT_EQ(outcomes[1].error_message, "texts[1]: empty");
}

TEST(Parsing, ABatchAnswerWithTheWrongCountThrows) {
    json body = {{"results", json::array({answer()})}};
    EXPECT_THROW(classification::detail::parse_batch(body.dump(), 2), std::runtime_error);
}

TEST(Parsing, TheServicesErrorShapeGivesCodeAndMessage) {
    auto [code, message] = classification::detail::parse_error(R"({"error": "text: must not be empty", "code": "invalid_text"})");
    EXPECT_EQ(code, "invalid_text");
    EXPECT_EQ(message, "text: must not be empty");
}

TEST(Parsing, BentoMLsListShapedErrorsAreReadToo) {
    auto [code, message] = classification::detail::parse_error(R"([{"error": "bad json"}])");
    EXPECT_EQ(code, "invalid_request");
    EXPECT_EQ(message, "bad json");
}

TEST(Parsing, ANonJsonErrorBodyIsKeptAsTheMessage) {
    auto [code, message] = classification::detail::parse_error("<html>Bad Gateway</html>");
    EXPECT_EQ(code, "http_error");
    EXPECT_EQ(message, "<html>Bad Gateway</html>");
}

TEST(Parsing, ANumericErrorCodeFromAGatewayIsKeptAsText) {
    auto [code, message] = classification::detail::parse_error(R"({"error": "too many requests", "code": 429})");
    EXPECT_EQ(code, "429");
    EXPECT_EQ(message, "too many requests");
}

TEST(RetryPolicy, A429WithANumericCodeIsRejectedNotRetried) {
    auto client = scripted({status(429, {{"error", "slow down"}, {"code", 429}})});
    try {
        client.predictor->predict("x");
        FAIL() << "expected RequestRejected";
    } catch (const RequestRejected& rejected) {
        EXPECT_EQ(rejected.status(), 429);
        EXPECT_EQ(rejected.code(), "429");
    }
    EXPECT_EQ(client.transport->paths.size(), 1u);
}

TEST(Bodies, ARequestCarriesTheTextAndTheUserWhenGiven) {
    EXPECT_EQ(json::parse(classification::detail::request_body("a \"quoted\" text", std::nullopt)),
              (json{{"text", "a \"quoted\" text"}}));
    EXPECT_EQ(json::parse(classification::detail::request_body("x", std::string("u-1"))),
              (json{{"text", "x"}, {"user_id", "u-1"}}));
}

TEST(Bodies, ABatchCarriesEveryTextInOrder) {
    json body = json::parse(classification::detail::batch_body({"b", "a", "ü"}, std::nullopt));
    EXPECT_EQ(body.at("texts"), (json{"b", "a", "ü"}));
    EXPECT_FALSE(body.contains("user_id"));
}

// --- the retry policy

TEST(RetryPolicy, ConnectionFailuresAndGatewayErrorsAreRetryableTimeoutsAndClientErrorsAreNot) {
    using classification::detail::is_retryable;
    EXPECT_TRUE(is_retryable(failure(kCouldntConnect)));
    EXPECT_TRUE(is_retryable(failure(kGotNothing)));
    EXPECT_TRUE(is_retryable(status(502)));
    EXPECT_TRUE(is_retryable(status(503)));
    EXPECT_TRUE(is_retryable(status(504)));
    EXPECT_FALSE(is_retryable(failure(kTimedOut, true)));
    EXPECT_FALSE(is_retryable(failure(kSslConnectError)));
    EXPECT_FALSE(is_retryable(status(500)));
    EXPECT_FALSE(is_retryable(status(400)));
    EXPECT_FALSE(is_retryable(status(429)));
}

TEST(RetryPolicy, TheBackoffDoublesUpToItsCeiling) {
    ClientConfig config;
    config.retry_backoff = 50ms;
    config.max_retry_backoff = 300ms;
    EXPECT_EQ(classification::detail::backoff_limit(config, 0), 50ms);
    EXPECT_EQ(classification::detail::backoff_limit(config, 1), 100ms);
    EXPECT_EQ(classification::detail::backoff_limit(config, 2), 200ms);
    EXPECT_EQ(classification::detail::backoff_limit(config, 3), 300ms);
    EXPECT_EQ(classification::detail::backoff_limit(config, 60), 300ms);
}

TEST(RetryPolicy, TheWaitIsTheLongerOfTheJitterAndTheRetryAfterAtMostTheCap) {
    using classification::detail::retry_wait;
    ClientConfig config;
    config.max_retry_after = 10s;
    EXPECT_EQ(retry_wait(config, status(503), 30ms), 30ms);  // no header: the jitter as before
    EXPECT_EQ(retry_wait(config, asking_to_wait(503, 1s), 30ms), 1s);
    EXPECT_EQ(retry_wait(config, asking_to_wait(502, 500ms), 800ms), 800ms);  // the jitter is longer
    EXPECT_EQ(retry_wait(config, asking_to_wait(503, 3600s), 30ms), 10s);
    config.max_retry_after = 0ms;  // the header ignored
    EXPECT_EQ(retry_wait(config, asking_to_wait(503, 5s), 30ms), 30ms);
}

TEST(RetryAfter, DelaySecondsAreReadWhateverTheCaseOfTheHeaderName) {
    using classification::detail::parse_retry_after;
    const std::time_t now = std::time(nullptr);
    EXPECT_EQ(parse_retry_after("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n", now), 1s);
    EXPECT_EQ(parse_retry_after("HTTP/1.1 503 Service Unavailable\r\nretry-after:  120 \r\n", now), 120s);
    EXPECT_EQ(parse_retry_after("HTTP/1.1 503 x\r\nRETRY-AFTER: 0\r\n", now), 0s);
    // Too many digits for any clock: read as a very long wait, which the cap then bounds.
    EXPECT_GE(parse_retry_after("HTTP/1.1 503 x\r\nRetry-After: " + std::string(400, '9') + "\r\n", now).value(),
              std::chrono::hours(24 * 365));
}

TEST(RetryAfter, AnHttpDateIsReadAgainstTheAnswersDateElseTheLocalClock) {
    using classification::detail::parse_retry_after;
    const std::time_t now = std::time(nullptr);
    EXPECT_EQ(parse_retry_after("HTTP/1.1 503 x\r\nRetry-After: " + http_date(now + 90) + "\r\n", now), 90s);
    // A server clock an hour behind: against our clock the date is long past, against its own Date it is 5 s.
    const std::time_t server_now = now - 3600;
    const std::string skewed = "HTTP/1.1 503 x\r\nDate: " + http_date(server_now) +
                               "\r\nRetry-After: " + http_date(server_now + 5) + "\r\n";
    EXPECT_EQ(parse_retry_after(skewed, now), 5s);
    EXPECT_EQ(parse_retry_after("HTTP/1.1 503 x\r\nRetry-After: " + http_date(now - 60) + "\r\n", now), 0s);
}

TEST(RetryAfter, AnAnswerWithoutAReadableRetryAfterHasNone) {
    using classification::detail::parse_retry_after;
    const std::time_t now = std::time(nullptr);
    EXPECT_FALSE(parse_retry_after("HTTP/1.1 503 x\r\nContent-Length: 2\r\n\r\n", now).has_value());
    EXPECT_FALSE(parse_retry_after("", now).has_value());
    for (const std::string value : {"", "soon", "1.5", "-1"}) {
        EXPECT_FALSE(parse_retry_after("HTTP/1.1 503 x\r\nRetry-After: " + value + "\r\n", now).has_value())
            << value;
    }
    // Only the header of that name: one whose name merely starts the same is another header.
    EXPECT_FALSE(parse_retry_after("HTTP/1.1 503 x\r\nRetry-After-Ms: 5\r\n", now).has_value());
}

TEST(RetryPolicy, A503WithARetryAfterWaitsThatLongThenTheRetryAnswers) {
    auto client = scripted({asking_to_wait(503, 300ms), ok(answer("local"))});
    const auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(client.predictor->predict("dentist near me").intent, "local");
    EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms);  // the jitter alone is at most 2 ms
    EXPECT_EQ(client.transport->paths.size(), 2u);
    EXPECT_EQ(client.predictor->stats().requests, 2u);
    EXPECT_EQ(client.predictor->stats().retries, 1u);
    EXPECT_EQ(client.predictor->stats().fallbacks, 0u);
}

TEST(RetryPolicy, A503IsRetriedUntilTheServiceAnswers) {
    auto client = scripted({status(503), status(502), ok(answer("local"))});
    EXPECT_EQ(client.predictor->predict("dentist near me").intent, "local");
    EXPECT_EQ(client.transport->paths.size(), 3u);
    EXPECT_EQ(client.predictor->stats().retries, 2u);
}

TEST(RetryPolicy, AConnectionRefusedIsRetriedThenTheServiceAnswers) {
    auto client = scripted({failure(kCouldntConnect), ok(answer("local"))});
    EXPECT_EQ(client.predictor->predict("x").intent, "local");
    EXPECT_EQ(client.transport->paths.size(), 2u);
}

TEST(RetryPolicy, AtMostMaxRetriesAreMadeThenTheFallbackAnswers) {
    auto client = scripted({status(503)});
    IntentPrediction p = client.predictor->predict("x");
    EXPECT_EQ(client.transport->paths.size(), 4u);  // 1 + 3 retries
    EXPECT_TRUE(p.from_client_fallback);
}

TEST(RetryPolicy, ZeroRetriesMeansOneAttempt) {
    ClientConfig config = fast_config();
    config.max_retries = 0;
    auto client = scripted({status(503)}, config);
    client.predictor->predict("x");
    EXPECT_EQ(client.transport->paths.size(), 1u);
}

TEST(RetryPolicy, AClientErrorIsNeverRetriedAndThrowsWithTheServicesCode) {
    auto client = scripted({status(400, {{"error", "text: must not be empty"}, {"code", "invalid_text"}})});
    try {
        client.predictor->predict("   ");
        FAIL() << "expected RequestRejected";
    } catch (const RequestRejected& rejected) {
        EXPECT_EQ(rejected.status(), 400);
        EXPECT_EQ(rejected.code(), "invalid_text");
        EXPECT_NE(std::string(rejected.what()).find("text: must not be empty"), std::string::npos);
    }
    EXPECT_EQ(client.transport->paths.size(), 1u);
}

TEST(RetryPolicy, A4xxIsNotReplacedByTheFallback) {
    auto client = scripted({status(422, {{"error", "x"}, {"code", "invalid_request"}})});
    EXPECT_THROW(client.predictor->predict("x"), RequestRejected);
    EXPECT_EQ(client.predictor->stats().fallbacks, 0u);
}

TEST(RetryPolicy, ATimeoutIsNotRetried) {
    auto client = scripted({failure(kTimedOut, true), ok(answer())});
    IntentPrediction p = client.predictor->predict("x");
    EXPECT_TRUE(p.from_client_fallback);
    EXPECT_EQ(client.transport->paths.size(), 1u);
}

// --- fallback

TEST(Fallback, TheConfiguredDefaultIntentAnswersFlaggedWhenTheServiceIsUnreachable) {
    ClientConfig config = fast_config();
    config.default_intent = "navigational";
    auto client = scripted({failure(kCouldntConnect)}, config);
    IntentPrediction p = client.predictor->predict("x");
    EXPECT_EQ(p.intent, "navigational");
    EXPECT_EQ(p.variant, "client_default");
    EXPECT_TRUE(p.fallback);
    EXPECT_TRUE(p.from_client_fallback);
    EXPECT_DOUBLE_EQ(p.confidence, 0.0);
    EXPECT_FALSE(p.model_version.has_value());
    EXPECT_EQ(client.predictor->stats().fallbacks, 1u);
}

TEST(Fallback, WithoutADefaultTheCallerGetsServiceUnavailable) {
    ClientConfig config = fast_config();
    config.default_intent.reset();
    auto client = scripted({failure(kCouldntConnect)}, config);
    EXPECT_THROW(client.predictor->predict("x"), ServiceUnavailable);
}

TEST(Fallback, ServiceUnavailableSaysWhetherTheTimeRanOut) {
    ClientConfig config = fast_config();
    config.default_intent.reset();
    auto client = scripted({failure(kTimedOut, true)}, config);
    try {
        client.predictor->predict("x");
        FAIL() << "expected ServiceUnavailable";
    } catch (const ServiceUnavailable& error) {
        EXPECT_TRUE(error.timed_out());
    }
}

TEST(Fallback, A500IsAnOutageForTheCallerNotARejection) {
    auto client = scripted({status(500, {{"error", "boom"}, {"code", "internal_error"}})});
    EXPECT_TRUE(client.predictor->predict("x").from_client_fallback);
    EXPECT_EQ(client.transport->paths.size(), 1u);  // 500 is not retried
}

TEST(Fallback, AMalformedAnswerIsAnOutageNotACrash) {
    auto client = scripted({answered(200, "<html>proxy login</html>")});
    IntentPrediction p = client.predictor->predict("x");
    EXPECT_TRUE(p.from_client_fallback);
    EXPECT_EQ(client.transport->paths.size(), 1u);  // not retried: the service did answer, wrongly
}

TEST(Fallback, AnAnswerMissingAFieldIsAnOutageForACallerWithoutDefault) {
    ClientConfig config = fast_config();
    config.default_intent.reset();
    auto client = scripted({ok({{"intent", "local"}})}, config);
    try {
        client.predictor->predict("x");
        FAIL() << "expected ServiceUnavailable";
    } catch (const ServiceUnavailable& error) {
        EXPECT_NE(std::string(error.what()).find("unexpected answer"), std::string::npos);
        EXPECT_FALSE(error.timed_out());
    }
}

TEST(Fallback, ABatchFallsBackTextByText) {
    auto client = scripted({failure(kCouldntConnect)});
    auto outcomes = client.predictor->predict_batch({"a", "b", "c"});
    ASSERT_EQ(outcomes.size(), 3u);
    for (const auto& outcome : outcomes) EXPECT_TRUE(outcome.ok() && outcome.prediction->from_client_fallback);
    EXPECT_EQ(client.predictor->stats().fallbacks, 3u);
}

// --- requests

TEST(Requests, TheVariantTravelsAsTheModelPreferenceHeader) {
    ClientConfig config = fast_config();
    config.variant = "ensemble";
    auto client = scripted({ok(answer("local", "ensemble"))}, config);
    client.predictor->predict("x");
    EXPECT_EQ(client.transport->last_headers.at("X-Model-Preference"), "ensemble");
    EXPECT_EQ(client.transport->paths.back(), "/api/classify");
}

TEST(Requests, NoVariantMeansNoPreferenceHeader) {
    auto client = scripted({ok(answer())});
    client.predictor->predict("x");
    EXPECT_EQ(client.transport->last_headers.count("X-Model-Preference"), 0u);
}

TEST(Requests, TheUserIdIsSentForStickyVariants) {
    auto client = scripted({ok(answer())});
    client.predictor->predict("x", std::string("u-42"));
    EXPECT_EQ(json::parse(client.transport->bodies.back()).at("user_id"), "u-42");
}

TEST(Requests, ABatchGoesToTheBatchRoute) {
    auto transport = std::make_unique<ScriptedTransport>(batch_answer);
    ScriptedTransport* raw = transport.get();
    IntentPredictor predictor(fast_config(), std::move(transport));
    auto outcomes = predictor.predict_batch({"chase login", ""});
    EXPECT_EQ(raw->paths.back(), "/api/classify/batch");
    ASSERT_EQ(outcomes.size(), 2u);
    EXPECT_TRUE(outcomes[0].ok());
    EXPECT_EQ(outcomes[1].error_code, "invalid_text");
}

TEST(Requests, AnEmptyBatchSendsNothing) {
    auto client = scripted({ok(answer())});
    EXPECT_TRUE(client.predictor->predict_batch({}).empty());
    EXPECT_TRUE(client.transport->paths.empty());
}

// --- configuration

TEST(Config, AnURLWithoutSchemeIsRefused) {
    ClientConfig config;
    config.base_url = "127.0.0.1:3000";
    EXPECT_THROW(IntentPredictor{config}, std::invalid_argument);
}

TEST(Config, ATrailingSlashIsIgnored) {
    ClientConfig config = fast_config();
    config.base_url = "http://127.0.0.1:3000/";
    auto client = scripted({ok(answer())}, config);
    EXPECT_EQ(client.predictor->config().base_url, "http://127.0.0.1:3000");
}

TEST(Config, AnEmptyPoolIsRefused) {
    ClientConfig config;
    config.pool_size = 0;
    EXPECT_THROW(IntentPredictor{config}, std::invalid_argument);
}

TEST(Config, ANegativeRetryAfterCapIsRefused) {
    ClientConfig config = fast_config();
    config.max_retry_after = -1ms;
    EXPECT_THROW(IntentPredictor(config, std::make_unique<ScriptedTransport>(std::deque<HttpResult>{ok(answer())})),
                 std::invalid_argument);
}

TEST(Config, NegativeRetriesAreRefused) {
    ClientConfig config;
    config.max_retries = -1;
    EXPECT_THROW(IntentPredictor(config, std::make_unique<ScriptedTransport>(std::deque<HttpResult>{ok(answer())})),
                 std::invalid_argument);
}

// --- batching and threads

TEST(Batching, ConcurrentPredictionsTravelAsOneBatchRequest) {
    ClientConfig config = fast_config();
    config.batch_window = 5s;  // never reached: the batch is full first
    config.max_batch_size = 40;  // one per thread
    auto transport = std::make_unique<ScriptedTransport>(batch_answer);
    ScriptedTransport* raw = transport.get();
    IntentPredictor predictor(config, std::move(transport));
    StartingGate gate(40);
    std::vector<std::thread> threads;
    std::atomic<int> local{0};
    for (int i = 0; i < 40; ++i) {
        threads.emplace_back([&] {
            gate.arrive_and_wait();
            local += predictor.predict("dentist near me").intent == "local";
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(local.load(), 40);
    ASSERT_EQ(raw->paths.size(), 1u);
    EXPECT_EQ(raw->paths[0], "/api/classify/batch");
    EXPECT_EQ(json::parse(raw->bodies[0]).at("texts").size(), 40u);
    EXPECT_EQ(predictor.stats().batches, 1u);
}

TEST(Batching, ABatchNeverExceedsTheMaximumSize) {
    ClientConfig config = fast_config();
    config.batch_window = 50ms;
    config.max_batch_size = 8;
    auto transport = std::make_unique<ScriptedTransport>(batch_answer);
    ScriptedTransport* raw = transport.get();
    IntentPredictor predictor(config, std::move(transport));
    std::vector<std::thread> threads;
    for (int i = 0; i < 30; ++i) threads.emplace_back([&] { predictor.predict("x"); });
    for (auto& thread : threads) thread.join();
    for (const auto& body : raw->bodies) EXPECT_LE(json::parse(body).at("texts").size(), 8u);
    EXPECT_GE(raw->paths.size(), 4u);
}

TEST(Batching, ABadTextInACoalescedBatchFailsOnlyItsOwnCall) {
    ClientConfig config = fast_config();
    config.batch_window = 300ms;  // the batch goes when its window ends (10 calls, room for 100)
    IntentPredictor predictor(config, std::make_unique<ScriptedTransport>(batch_answer));
    std::atomic<int> rejected{0}, answered{0};
    StartingGate gate(10);
    std::vector<std::thread> threads;
    for (int i = 0; i < 10; ++i) {
        threads.emplace_back([&, i] {
            gate.arrive_and_wait();
            try {
                predictor.predict(i == 3 ? "" : "x");
                ++answered;
            } catch (const RequestRejected& error) {
                rejected += error.code() == "invalid_text";
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(rejected.load(), 1);
    EXPECT_EQ(answered.load(), 9);
    EXPECT_LT(predictor.stats().batches, 10u);  // the calls were coalesced, the bad one with the others
}

TEST(Batching, InvalidUtf8FailsItsOwnCallBeforeAnythingIsSent) {
    ClientConfig config = fast_config();
    config.batch_window = 5s;  // never reached: the 7 valid texts fill the batch
    config.max_batch_size = 7;
    auto transport = std::make_unique<ScriptedTransport>(batch_answer);
    ScriptedTransport* raw = transport.get();
    IntentPredictor predictor(config, std::move(transport));
    std::atomic<int> invalid{0}, answered{0};
    StartingGate gate(8);
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&, i] {
            gate.arrive_and_wait();
            try {
                answered += predictor.predict(i == 5 ? std::string("caf\xc3") : std::string("cafe")).intent == "local";
            } catch (const std::invalid_argument& error) {
                invalid += std::string(error.what()).find("UTF-8") != std::string::npos;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(invalid.load(), 1);
    EXPECT_EQ(answered.load(), 7);
    ASSERT_EQ(raw->bodies.size(), 1u);  // one batch: the bad text never reached it
    EXPECT_EQ(json::parse(raw->bodies[0]).at("texts").size(), 7u);
}

TEST(Batching, ABatchAnswerWithAResultMissingFallsBackForEveryCallOfTheBatch) {
    ClientConfig config = fast_config();
    config.batch_window = 20ms;
    IntentPredictor predictor(config, std::make_unique<ScriptedTransport>([](const std::string&, const std::string& body) {
        json results = json::array();
        for (std::size_t i = 1; i < json::parse(body).at("texts").size(); ++i) results.push_back(answer());
        return ok({{"results", results}});  // one result short: no call can tell which answer is its own
    }));
    std::atomic<int> fallbacks{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 6; ++i) threads.emplace_back([&] { fallbacks += predictor.predict("x").from_client_fallback; });
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(fallbacks.load(), 6);
}

TEST(Batching, CoalescedCallsFallBackTogetherWhenTheServiceIsDown) {
    ClientConfig config = fast_config();
    config.batch_window = 10ms;
    auto client = scripted({failure(kCouldntConnect)}, config);
    std::vector<std::thread> threads;
    std::atomic<int> fallbacks{0};
    for (int i = 0; i < 6; ++i) {
        threads.emplace_back([&] { fallbacks += client.predictor->predict("x").from_client_fallback; });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(fallbacks.load(), 6);
}

TEST(Batching, CallsWithAUserIdGoAloneToKeepTheirStickyVariant) {
    ClientConfig config = fast_config();
    config.batch_window = 10ms;
    auto client = scripted({ok(answer())}, config);
    client.predictor->predict("x", std::string("u-1"));
    EXPECT_EQ(client.transport->paths.back(), "/api/classify");
}

TEST(Batching, APredictorWithABatchWindowStopsPromptly) {
    ClientConfig config = fast_config();
    config.batch_window = std::chrono::seconds(5);
    const auto started = std::chrono::steady_clock::now();
    {
        IntentPredictor predictor(config, std::make_unique<ScriptedTransport>(batch_answer));
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);  // the collector does not sit out its window
}

TEST(Threads, ManyThreadsShareOnePredictorWithoutLosingACall) {
    auto transport = std::make_unique<ScriptedTransport>(
        [](const std::string&, const std::string& body) { return ok(answer(json::parse(body).at("text").get<std::string>())); });
    ScriptedTransport* raw = transport.get();
    IntentPredictor predictor(fast_config(), std::move(transport));
    std::vector<std::thread> threads;
    std::atomic<int> matched{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const std::string text = "t" + std::to_string(t) + "-" + std::to_string(i);
                matched += predictor.predict(text).intent == text;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(matched.load(), 400);
    EXPECT_EQ(raw->paths.size(), 400u);
    EXPECT_EQ(predictor.stats().requests, 400u);
}
