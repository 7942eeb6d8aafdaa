#include "classification/IntentPredictor.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

namespace classification {

namespace {

using json = nlohmann::json;

constexpr const char* kClassifyPath = "/api/classify";
constexpr const char* kClassifyBatchPath = "/api/classify/batch";
constexpr const char* kPreferenceHeader = "X-Model-Preference";
constexpr const char* kClientDefaultVariant = "client_default";
// Delay-seconds beyond this are read as this (about 31 years): any cap is shorter, and the arithmetic cannot overflow.
constexpr long long kLongestRetryAfterSeconds = 1'000'000'000;

IntentPrediction client_fallback(const std::string& intent) {
    IntentPrediction prediction;
    prediction.intent = intent;
    prediction.variant = kClientDefaultVariant;
    prediction.fallback = true;
    prediction.from_client_fallback = true;
    return prediction;
}

std::size_t append_body(char* data, std::size_t size, std::size_t count, void* target) {
    static_cast<std::string*>(target)->append(data, size * count);
    return size * count;
}

// Keeps the header block of the last answer only: a status line starts a new block (a 100 Continue or a
// redirect's headers come before the final answer's).
std::size_t append_header(char* data, std::size_t size, std::size_t count, void* target) {
    auto* block = static_cast<std::string*>(target);
    const std::size_t length = size * count;
    if (length >= 5 && std::memcmp(data, "HTTP/", 5) == 0) block->clear();
    block->append(data, length);
    return length;
}

// The value of `line` when it is the header `name` (matched regardless of case), spaces and line end trimmed.
std::optional<std::string_view> header_value(std::string_view line, std::string_view name) {
    if (line.size() <= name.size() || line[name.size()] != ':') return std::nullopt;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return std::nullopt;
    }
    std::string_view value = line.substr(name.size() + 1);
    const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!value.empty() && blank(value.front())) value.remove_prefix(1);
    while (!value.empty() && blank(value.back())) value.remove_suffix(1);
    return value;
}

// A pool of curl easy handles: a handle keeps its connection open between requests, so reusing handles
// reuses connections. curl_easy_reset() between requests clears the options but keeps the connection.
class CurlTransport : public HttpTransport {
public:
    explicit CurlTransport(const ClientConfig& config) : config_(config) {
        static std::once_flag global_init;
        static CURLcode global_status = CURLE_OK;
        std::call_once(global_init, [] { global_status = curl_global_init(CURL_GLOBAL_DEFAULT); });
        if (global_status != CURLE_OK) throw std::runtime_error(std::string("curl_global_init: ") + curl_easy_strerror(global_status));
        if (config.pool_size == 0) throw std::invalid_argument("pool_size: expected at least 1");
        for (std::size_t i = 0; i < config.pool_size; ++i) {
            CURL* handle = curl_easy_init();
            if (handle == nullptr) throw std::runtime_error("curl_easy_init failed");
            idle_.push_back(handle);
        }
    }

    ~CurlTransport() override {
        for (CURL* handle : idle_) curl_easy_cleanup(handle);
    }

    HttpResult post(const std::string& path, const std::string& json_body,
                    const std::map<std::string, std::string>& headers) override {
        HttpResult result;
        // One deadline per attempt: waiting for a free connection spends the attempt's time, and curl gets what is
        // left, so a caller never waits longer than total_timeout, pool wait and exchange together.
        const auto deadline = std::chrono::steady_clock::now() + config_.total_timeout;
        Lease lease(*this, deadline);
        const std::chrono::milliseconds left = detail::time_left(deadline, std::chrono::steady_clock::now());
        if (lease.handle == nullptr || left.count() == 0) {
            result.transport_error = static_cast<int>(CURLE_OPERATION_TIMEDOUT);
            result.transport_message = "no free connection within the total timeout (pool_size " +
                                       std::to_string(config_.pool_size) + ")";
            result.timed_out = true;
            return result;
        }
        CURL* handle = lease.handle;
        std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(
            curl_slist_append(nullptr, "Content-Type: application/json"), curl_slist_free_all);
        for (const auto& [name, value] : headers) {
            header_list.reset(curl_slist_append(header_list.release(), (name + ": " + value).c_str()));
        }
        const std::string url = config_.base_url + path;
        curl_easy_reset(handle);
        curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl_easy_setopt(handle, CURLOPT_POST, 1L);
        curl_easy_setopt(handle, CURLOPT_POSTFIELDS, json_body.c_str());
        curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE, static_cast<long>(json_body.size()));
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(handle, CURLOPT_WRITEDATA, &result.body);
        std::string header_block;
        curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, append_header);
        curl_easy_setopt(handle, CURLOPT_HEADERDATA, &header_block);
        const std::chrono::milliseconds connect_left = std::min(config_.connect_timeout, left);
        curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_left.count()));
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);  // timeouts without signals: required with threads
        curl_easy_setopt(handle, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(handle, CURLOPT_TCP_KEEPALIVE, 1L);
        const CURLcode code = curl_easy_perform(handle);
        if (code == CURLE_OK) {
            curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &result.status);
            result.retry_after = detail::parse_retry_after(header_block, std::time(nullptr));
        } else {
            result.transport_error = static_cast<int>(code);
            result.transport_message = curl_easy_strerror(code);
            result.timed_out = code == CURLE_OPERATION_TIMEDOUT;
        }
        return result;
    }

private:
    // A handle taken from the pool, given back however the request ends.
    struct Lease {
        Lease(CurlTransport& pool, std::chrono::steady_clock::time_point deadline) : pool(pool) {
            std::unique_lock<std::mutex> lock(pool.mutex_);
            if (pool.available_.wait_until(lock, deadline, [&] { return !pool.idle_.empty(); })) {
                handle = pool.idle_.back();
                pool.idle_.pop_back();
            }
        }
        ~Lease() {
            if (handle == nullptr) return;
            {
                std::lock_guard<std::mutex> lock(pool.mutex_);
                pool.idle_.push_back(handle);
            }
            pool.available_.notify_one();
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        CurlTransport& pool;
        CURL* handle = nullptr;
    };

    ClientConfig config_;
    std::mutex mutex_;
    std::condition_variable available_;
    std::vector<CURL*> idle_;
};

std::string checked_text(const std::string& text, const std::string& where) {
    try {
        return json(text).dump();
    } catch (const json::exception&) {
        throw std::invalid_argument(where + ": not valid UTF-8");
    }
}

}  // namespace

RequestRejected::RequestRejected(long status, std::string code, const std::string& message)
    : std::runtime_error(std::to_string(status) + " " + code + ": " + message), status_(status), code_(std::move(code)) {}

ServiceUnavailable::ServiceUnavailable(const std::string& what, bool timed_out)
    : std::runtime_error(what), timed_out_(timed_out) {}

std::unique_ptr<HttpTransport> make_curl_transport(const ClientConfig& config) {
    return std::make_unique<CurlTransport>(config);
}

namespace detail {

IntentPrediction parse_prediction_value(const json& value);

IntentPrediction parse_prediction(const std::string& json_object) {
    return parse_prediction_value(json::parse(json_object));
}

IntentPrediction parse_prediction_value(const json& value) {
    IntentPrediction prediction;
    prediction.intent = value.at("intent").get<std::string>();
    prediction.confidence = value.at("confidence").get<double>();
    for (const auto& vertical : value.at("verticals")) {
        prediction.verticals.push_back({vertical.at("vertical").get<std::string>(), vertical.at("score").get<double>()});
    }
    prediction.variant = value.at("variant").get<std::string>();
    if (value.contains("model_version") && !value.at("model_version").is_null()) {
        prediction.model_version = value.at("model_version").get<std::string>();
    }
    prediction.fallback = value.value("fallback", false);
    prediction.cached = value.value("cached", false);
    return prediction;
}

std::vector<BatchOutcome> parse_batch(const std::string& json_body, std::size_t expected) {
    const json body = json::parse(json_body);
    const json& results = body.at("results");
    if (results.size() != expected) {
        throw std::runtime_error("batch answer holds " + std::to_string(results.size()) + " results for " +
                                 std::to_string(expected) + " texts");
    }
    std::vector<BatchOutcome> outcomes;
    outcomes.reserve(results.size());
    for (const auto& result : results) {
        BatchOutcome outcome;
        if (result.contains("error")) {
            outcome.error_code = result.at("error").value("code", "invalid_request");
            outcome.error_message = result.at("error").value("message", "");
        } else {
            outcome.prediction = parse_prediction_value(result);
        }
        outcomes.push_back(std::move(outcome));
    }
    return outcomes;
}

std::pair<std::string, std::string> parse_error(const std::string& body) {
    // The service's shape is {"error": message, "code": code}; BentoML's own 4xx may be a list of those.
    const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    const json* error = &parsed;
    if (parsed.is_array() && !parsed.empty()) error = &parsed.front();
    if (error->is_object()) {
        const auto text = [&](const char* key, const std::string& otherwise) {
            if (!error->contains(key)) return otherwise;
            const json& value = (*error)[key];
            return value.is_string() ? value.get<std::string>() : value.dump();  // a gateway may send a number
        };
        return {text("code", "invalid_request"), text("error", error->dump())};
    }
    return {"http_error", body.substr(0, 500)};
}

bool is_retryable(const HttpResult& result) {
    if (result.transport_error != 0) {
        switch (static_cast<CURLcode>(result.transport_error)) {
            case CURLE_COULDNT_CONNECT:
            case CURLE_COULDNT_RESOLVE_HOST:
            case CURLE_SEND_ERROR:
            case CURLE_RECV_ERROR:
            case CURLE_GOT_NOTHING:  // a kept-alive connection closed as the request went out: not processed
                return true;
            default:
                return false;  // a timeout among them: the time is spent
        }
    }
    return result.status == 502 || result.status == 503 || result.status == 504;
}

std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline,
                                    std::chrono::steady_clock::time_point now) {
    // Rounded down: curl reads a timeout of 0 ms as "no timeout", so less than 1 ms left must read as none left.
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now), std::chrono::milliseconds(0));
}

std::chrono::milliseconds backoff_limit(const ClientConfig& config, int retry) {
    const auto doubled = config.retry_backoff * (1LL << std::min(retry, 20));
    return std::min<std::chrono::milliseconds>(doubled, config.max_retry_backoff);
}

std::chrono::milliseconds retry_wait(const ClientConfig& config, const HttpResult& result,
                                     std::chrono::milliseconds jitter) {
    if (!result.retry_after) return jitter;
    return std::max(jitter, std::min(*result.retry_after, config.max_retry_after));
}

std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& header_block, std::time_t now) {
    std::optional<std::string> retry_after;
    std::optional<std::string> date;
    for (std::size_t start = 0; start < header_block.size();) {
        const std::size_t end = std::min(header_block.find('\n', start), header_block.size());
        const std::string_view line(header_block.data() + start, end - start);
        start = end + 1;
        if (const auto value = header_value(line, "retry-after")) retry_after = std::string(*value);
        else if (const auto value = header_value(line, "date")) date = std::string(*value);
    }
    if (!retry_after || retry_after->empty()) return std::nullopt;
    if (std::all_of(retry_after->begin(), retry_after->end(), [](unsigned char c) { return std::isdigit(c); })) {
        long long seconds = 0;
        for (const char digit : *retry_after) {
            seconds = std::min(seconds * 10 + (digit - '0'), kLongestRetryAfterSeconds);
        }
        return std::chrono::seconds(seconds);
    }
    // curl_getdate reads the three HTTP-date forms (and more); -1 when it cannot.
    const std::time_t asked = curl_getdate(retry_after->c_str(), nullptr);
    if (asked == -1) return std::nullopt;
    std::time_t reference = now;
    if (date) {
        const std::time_t server_now = curl_getdate(date->c_str(), nullptr);
        if (server_now != -1) reference = server_now;
    }
    const long long seconds = static_cast<long long>(asked) - static_cast<long long>(reference);
    return std::chrono::seconds(std::clamp(seconds, 0LL, kLongestRetryAfterSeconds));
}

std::string request_body(const std::string& text, const std::optional<std::string>& user_id) {
    json body = {{"text", text}};
    if (user_id) body["user_id"] = *user_id;
    return body.dump();
}

std::string batch_body(const std::vector<std::string>& texts, const std::optional<std::string>& user_id) {
    json body = {{"texts", texts}};
    if (user_id) body["user_id"] = *user_id;
    return body.dump();
}

}  // namespace detail

class IntentPredictor::Impl {
public:
    Impl(ClientConfig config, std::unique_ptr<HttpTransport> transport)
        : config_(std::move(config)), transport_(std::move(transport)) {
        if (config_.max_retries < 0) throw std::invalid_argument("max_retries: expected 0 or more");
        if (config_.max_retry_after.count() < 0) throw std::invalid_argument("max_retry_after: expected 0 or more");
        if (config_.max_batch_size == 0) throw std::invalid_argument("max_batch_size: expected at least 1");
        if (config_.variant) headers_[kPreferenceHeader] = *config_.variant;
        if (config_.batch_window.count() > 0) {
            collector_ = std::thread([this] { collect(); });
            for (std::size_t i = 0; i < kSenders; ++i) senders_.emplace_back([this] { send_batches(); });
        }
    }

    ~Impl() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        if (collector_.joinable()) collector_.join();  // it turns what is pending into batches first
        {
            std::lock_guard<std::mutex> lock(mutex_);
            collector_done_ = true;
        }
        ready_wake_.notify_all();
        for (auto& sender : senders_) sender.join();  // they send every batch formed
    }

    IntentPrediction predict(const std::string& text, const std::optional<std::string>& user_id) {
        checked_text(text, "text");  // in the caller's thread: a bad text fails its own call only
        if (collector_.joinable() && !user_id) {
            BatchOutcome outcome = submit(text).get();
            if (!outcome.ok()) throw RequestRejected(400, outcome.error_code, outcome.error_message);
            return *outcome.prediction;
        }
        try {
            const HttpResult result = send(kClassifyPath, detail::request_body(text, user_id));
            return parsed([&] { return detail::parse_prediction(result.body); });
        } catch (const ServiceUnavailable&) {
            if (!config_.default_intent) throw;
            ++stats_fallbacks_;
            return client_fallback(*config_.default_intent);
        }
    }

    std::vector<BatchOutcome> predict_batch(const std::vector<std::string>& texts,
                                            const std::optional<std::string>& user_id) {
        if (texts.empty()) return {};
        for (std::size_t i = 0; i < texts.size(); ++i) checked_text(texts[i], "texts[" + std::to_string(i) + "]");
        try {
            const HttpResult result = send(kClassifyBatchPath, detail::batch_body(texts, user_id));
            return parsed([&] { return detail::parse_batch(result.body, texts.size()); });
        } catch (const ServiceUnavailable&) {
            // Every text gets the default, also one the service would have refused: it cannot be asked.
            if (!config_.default_intent) throw;
            stats_fallbacks_ += texts.size();
            return std::vector<BatchOutcome>(texts.size(), BatchOutcome{client_fallback(*config_.default_intent), "", ""});
        }
    }

    ClientStats stats() const {
        return {stats_requests_.load(), stats_retries_.load(), stats_fallbacks_.load(), stats_batches_.load()};
    }

    const ClientConfig& config() const { return config_; }

private:
    // An answer that is not the API's (a proxy's page, a truncated body) is as good as none: ServiceUnavailable.
    template <typename Parse>
    static auto parsed(Parse parse) -> decltype(parse()) {
        try {
            return parse();
        } catch (const json::exception& error) {
            throw ServiceUnavailable(std::string("unexpected answer: ") + error.what(), false);
        } catch (const std::runtime_error& error) {
            throw ServiceUnavailable(std::string("unexpected answer: ") + error.what(), false);
        }
    }

    // One call: retried while the failure is worth another attempt, after the jitter or the answer's Retry-After
    // (detail::retry_wait); a 4xx throws RequestRejected at once, any other failure ServiceUnavailable.
    HttpResult send(const std::string& path, const std::string& body) {
        for (int attempt = 0;; ++attempt) {
            ++stats_requests_;
            HttpResult result = transport_->post(path, body, headers_);
            if (result.transport_error == 0 && result.status < 400) return result;
            if (detail::is_retryable(result) && attempt < config_.max_retries) {
                ++stats_retries_;
                std::this_thread::sleep_for(detail::retry_wait(config_, result, jitter(attempt)));
                continue;
            }
            if (result.transport_error == 0 && result.status < 500) {
                auto [code, message] = detail::parse_error(result.body);
                throw RequestRejected(result.status, code, message);
            }
            const std::string what = result.transport_error != 0
                                         ? result.transport_message
                                         : "HTTP " + std::to_string(result.status) + ": " + result.body.substr(0, 300);
            throw ServiceUnavailable(what + " (after " + std::to_string(attempt + 1) + " attempts)", result.timed_out);
        }
    }

    std::chrono::milliseconds jitter(int retry) {
        thread_local std::mt19937_64 random{std::random_device{}()};
        const auto limit = detail::backoff_limit(config_, retry).count();
        std::uniform_int_distribution<long long> uniform(0, std::max<long long>(limit, 0));
        return std::chrono::milliseconds(uniform(random));
    }

    // --- client-side batching: a collector thread turns predict() calls into batches; sender threads send them,
    // several at once, so a slow batch does not hold up the next one.

    using Batch = std::vector<std::pair<std::string, std::promise<BatchOutcome>>>;
    static constexpr std::size_t kSenders = 4;

    std::future<BatchOutcome> submit(const std::string& text) {
        std::promise<BatchOutcome> promise;
        std::future<BatchOutcome> future = promise.get_future();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) throw ServiceUnavailable("the predictor is being destroyed", false);
            pending_.emplace_back(text, std::move(promise));
        }
        wake_.notify_all();
        return future;
    }

    void collect() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
            if (pending_.empty()) return;  // stopping, nothing left
            if (!stopping_) {  // the first text waits up to the window for company
                wake_.wait_for(lock, config_.batch_window,
                               [this] { return stopping_ || pending_.size() >= config_.max_batch_size; });
            }
            const std::size_t count = std::min(pending_.size(), config_.max_batch_size);
            Batch batch;
            for (std::size_t i = 0; i < count; ++i) {
                batch.push_back(std::move(pending_.front()));
                pending_.pop_front();
            }
            ready_.push_back(std::move(batch));
            ready_wake_.notify_one();
        }
    }

    void send_batches() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            ready_wake_.wait(lock, [this] { return collector_done_ || !ready_.empty(); });
            if (ready_.empty()) return;  // the collector is done and nothing is left
            Batch batch = std::move(ready_.front());
            ready_.pop_front();
            lock.unlock();
            deliver(batch);
            lock.lock();
        }
    }

    void deliver(Batch& batch) {
        std::vector<std::string> texts;
        texts.reserve(batch.size());
        for (const auto& item : batch) texts.push_back(item.first);
        ++stats_batches_;
        try {
            std::vector<BatchOutcome> outcomes = predict_batch(texts, std::nullopt);
            for (std::size_t i = 0; i < batch.size(); ++i) batch[i].second.set_value(std::move(outcomes[i]));
        } catch (...) {
            for (auto& item : batch) item.second.set_exception(std::current_exception());
        }
    }

    ClientConfig config_;
    std::unique_ptr<HttpTransport> transport_;
    std::map<std::string, std::string> headers_;
    std::atomic<std::uint64_t> stats_requests_{0};
    std::atomic<std::uint64_t> stats_retries_{0};
    std::atomic<std::uint64_t> stats_fallbacks_{0};
    std::atomic<std::uint64_t> stats_batches_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::pair<std::string, std::promise<BatchOutcome>>> pending_;
    std::condition_variable ready_wake_;
    std::deque<Batch> ready_;
    bool stopping_ = false;
    bool collector_done_ = false;
    std::thread collector_;
    std::vector<std::thread> senders_;
};

namespace {
ClientConfig normalized(ClientConfig config) {
    while (!config.base_url.empty() && config.base_url.back() == '/') config.base_url.pop_back();
    if (config.base_url.rfind("http://", 0) != 0 && config.base_url.rfind("https://", 0) != 0) {
        throw std::invalid_argument("base_url: expected http://host:port or https://..., got '" + config.base_url + "'");
    }
    return config;
}
}  // namespace

IntentPredictor::IntentPredictor(ClientConfig config) : IntentPredictor(normalized(config), nullptr) {}

IntentPredictor::IntentPredictor(ClientConfig config, std::unique_ptr<HttpTransport> transport) {
    config = normalized(std::move(config));
    if (!transport) transport = make_curl_transport(config);
    impl_ = std::make_unique<Impl>(std::move(config), std::move(transport));
}

IntentPredictor::~IntentPredictor() = default;

IntentPrediction IntentPredictor::predict(const std::string& text, const std::optional<std::string>& user_id) {
    return impl_->predict(text, user_id);
}

std::vector<BatchOutcome> IntentPredictor::predict_batch(const std::vector<std::string>& texts,
                                                         const std::optional<std::string>& user_id) {
    return impl_->predict_batch(texts, user_id);
}

ClientStats IntentPredictor::stats() const { return impl_->stats(); }

const ClientConfig& IntentPredictor::config() const { return impl_->config(); }

}  // namespace classification
