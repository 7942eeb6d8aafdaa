// C++ client of the intent endpoints of the inference service (POST /api/classify, /api/classify/batch).
//
//   classification::ClientConfig config;
//   config.base_url = "http://127.0.0.1:3000";
//   classification::IntentPredictor predictor(config);
//   classification::IntentPrediction p = predictor.predict("dentist near me");
//   // p.intent == "local"; p.from_client_fallback is true when the service could not answer in time
//
// Thread-safe: share one predictor between threads. Connections are kept alive in a pool of reusable curl
// handles; connection failures and 502/503/504 are retried with jittered exponential backoff. A 502/503/504 that
// carries Retry-After (seconds, or an HTTP-date read against the answer's own Date) makes the next attempt wait
// the longer of the jitter and the Retry-After, at most max_retry_after (10 s): a server asking for longer gets
// max_retry_after and another attempt, not an immediate failure, since the header may come from a proxy or a
// clock that is off, and max_retries still bounds the attempts. A 4xx answer throws RequestRejected at once; when
// the service cannot answer (unreachable, 5xx, or too slow) predict() returns the configured default intent
// flagged as a fallback, or throws ServiceUnavailable if none is set. With a batch window, predict() calls made at
// about the same time from several threads travel as one batch request. See docs/clients.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace classification {

struct VerticalScore {
    std::string vertical;
    double score = 0.0;
};

struct IntentPrediction {
    std::string intent;
    double confidence = 0.0;
    std::vector<VerticalScore> verticals;
    std::string variant;                       // classic, ensemble, default (the service's), client_default
    std::optional<std::string> model_version;  // none for a default answer
    bool fallback = false;                     // another variant, or a default, answered
    bool cached = false;
    bool from_client_fallback = false;         // the client answered: the service could not
};

// One text of a batch: a prediction, or the service's error for that text alone.
struct BatchOutcome {
    std::optional<IntentPrediction> prediction;
    std::string error_code;
    std::string error_message;
    bool ok() const { return prediction.has_value(); }
};

// The service refused the request (4xx): sending it again cannot help.
class RequestRejected : public std::runtime_error {
public:
    RequestRejected(long status, std::string code, const std::string& message);
    long status() const { return status_; }
    const std::string& code() const { return code_; }

private:
    long status_;
    std::string code_;
};

// No answer: unreachable, 5xx after the retries, or no answer within the total timeout.
class ServiceUnavailable : public std::runtime_error {
public:
    ServiceUnavailable(const std::string& what, bool timed_out);
    bool timed_out() const { return timed_out_; }

private:
    bool timed_out_;
};

struct ClientConfig {
    std::string base_url = "http://127.0.0.1:3000";
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds total_timeout{5000};  // per attempt: waiting for a pooled connection included
    int max_retries = 3;                              // after the first attempt
    std::chrono::milliseconds retry_backoff{50};      // the first retry waits up to this, doubling, jittered
    std::chrono::milliseconds max_retry_backoff{1000};
    std::chrono::milliseconds max_retry_after{10000};  // the longest Retry-After honoured; 0: ignore the header
    std::size_t pool_size = 8;                        // reusable connections (curl handles)
    std::optional<std::string> default_intent = std::string("informational");  // none: throw instead
    std::optional<std::string> variant;               // X-Model-Preference: classic or ensemble
    std::chrono::microseconds batch_window{0};        // 0: no client-side batching
    std::size_t max_batch_size = 100;
};

// What one HTTP exchange gave: a status and body, or a transport failure (curl's code and message).
struct HttpResult {
    long status = 0;
    std::string body;
    int transport_error = 0;  // 0: none; else a CURLcode
    std::string transport_message;
    bool timed_out = false;
    std::optional<std::chrono::milliseconds> retry_after;  // the answer's Retry-After header, when it had one
};

// The HTTP layer, replaceable in tests. post() must be safe to call from several threads.
class HttpTransport {
public:
    virtual ~HttpTransport() = default;
    virtual HttpResult post(const std::string& path, const std::string& json_body,
                            const std::map<std::string, std::string>& headers) = 0;
};

// libcurl with a pool of easy handles (each keeps its connection alive between requests).
std::unique_ptr<HttpTransport> make_curl_transport(const ClientConfig& config);

struct ClientStats {
    std::uint64_t requests = 0;   // HTTP requests sent, retries included
    std::uint64_t retries = 0;
    std::uint64_t fallbacks = 0;  // answers the client made up
    std::uint64_t batches = 0;    // batch requests sent for coalesced predict() calls
};

class IntentPredictor {
public:
    explicit IntentPredictor(ClientConfig config);
    IntentPredictor(ClientConfig config, std::unique_ptr<HttpTransport> transport);
    ~IntentPredictor();
    IntentPredictor(const IntentPredictor&) = delete;
    IntentPredictor& operator=(const IntentPredictor&) = delete;

    IntentPrediction predict(const std::string& text, const std::optional<std::string>& user_id = std::nullopt);
    std::vector<BatchOutcome> predict_batch(const std::vector<std::string>& texts,
                                            const std::optional<std::string>& user_id = std::nullopt);
    ClientStats stats() const;
    const ClientConfig& config() const;

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

// Parsing, backoff and the attempt deadline, exposed for tests.
namespace detail {
IntentPrediction parse_prediction(const std::string& json_object);
std::vector<BatchOutcome> parse_batch(const std::string& json_body, std::size_t expected);
std::pair<std::string, std::string> parse_error(const std::string& body);  // (code, message)
bool is_retryable(const HttpResult& result);
std::chrono::milliseconds backoff_limit(const ClientConfig& config, int retry);  // the jitter's upper bound
// The wait before the next attempt after `result`: the jitter, or the answer's Retry-After (at most
// config.max_retry_after) when that is longer.
std::chrono::milliseconds retry_wait(const ClientConfig& config, const HttpResult& result,
                                     std::chrono::milliseconds jitter);
// The Retry-After of an answer's header block as curl hands it over (a status line, then "Name: value" lines):
// delay-seconds, or an HTTP-date read against the block's own Date header when it has one (the server's clock
// on both), else against `now`; a date already past is 0. None without a readable Retry-After.
std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& header_block, std::time_t now);
// What an attempt has left until its deadline, whole milliseconds rounded down, 0 once spent.
std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline,
                                    std::chrono::steady_clock::time_point now);
std::string request_body(const std::string& text, const std::optional<std::string>& user_id);
std::string batch_body(const std::vector<std::string>& texts, const std::optional<std::string>& user_id);
}  // namespace detail

}  // namespace classification
