// The curl transport against a loopback HTTP server of the test's own: pooled handles keep their connections,
// one deadline bounds an attempt, waiting for a pooled handle included, and a 503's Retry-After is read and waited
// for. Waits are checked as lower bounds measured by the server: a busy machine can only make them longer.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <future>
#include <thread>
#include <vector>

#include "classification/IntentPredictor.h"
#include "http_date.h"
#include "loopback_server.h"
#include "starting_gate.h"

using classification::ClientConfig;
using classification::HttpResult;
using classification::IntentPrediction;
using classification::IntentPredictor;
using namespace std::chrono_literals;

namespace {

ClientConfig loopback_config(const LoopbackServer& server) {
    ClientConfig config;
    config.base_url = server.url();
    config.default_intent.reset();  // a failure must throw, not hide behind the default
    return config;
}

constexpr const char* kBody = R"({"text":"dentist near me"})";

long long milliseconds_since(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
}

}  // namespace

TEST(AttemptDeadline, TheTimeLeftRoundsDownSoLessThanAMillisecondLeftIsNoneLeft) {
    using classification::detail::time_left;
    const auto now = std::chrono::steady_clock::now();
    EXPECT_EQ(time_left(now + 1500ms, now), 1500ms);
    EXPECT_EQ(time_left(now + 1999us, now), 1ms);
    EXPECT_EQ(time_left(now + 999us, now), 0ms);  // spent: curl would read 0 ms as no timeout at all
    EXPECT_EQ(time_left(now, now + 5ms), 0ms);
}

TEST(CurlTransport, SequentialCallsReuseOneConnection) {
    LoopbackServer server;
    ClientConfig config = loopback_config(server);
    config.pool_size = 4;
    IntentPredictor predictor(config);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(predictor.predict("dentist near me").intent, "local");
    EXPECT_EQ(server.requests_read(), 20u);
    EXPECT_EQ(server.connections_accepted(), 1u);
}

TEST(CurlTransport, ConcurrentCallsOpenAtMostOneConnectionPerPooledHandle) {
    LoopbackServer server;
    ClientConfig config = loopback_config(server);
    config.pool_size = 2;
    IntentPredictor predictor(config);
    StartingGate gate(6);
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
        threads.emplace_back([&] {
            gate.arrive_and_wait();
            for (int i = 0; i < 10; ++i) predictor.predict("chase login");
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(server.requests_read(), 60u);
    EXPECT_LE(server.connections_accepted(), 2u);
}

TEST(CurlTransport, WaitingForAPooledHandleSpendsTheAttemptsTimeNotExtraTime) {
    // The first request holds the only handle for 1.5 s and is answered; the second caller gets the handle then,
    // with 1.5 s of its 3 s left, and the server never answers it in time. Bounded per attempt it gives up 3 s
    // after it started; were the wait not counted, curl would give it 3 s more after the handle came (4.5 s).
    LoopbackServer server([](std::size_t request) { return request == 0 ? 1500ms : 20000ms; });
    ClientConfig config = loopback_config(server);
    config.pool_size = 1;
    config.total_timeout = 3000ms;
    config.default_intent = "navigational";
    IntentPredictor predictor(config);
    std::future<IntentPrediction> first = std::async(std::launch::async, [&] { return predictor.predict("a"); });
    ASSERT_TRUE(server.wait_for_requests(1, 10s));

    const auto started = std::chrono::steady_clock::now();
    const IntentPrediction second = predictor.predict("b");
    const long long elapsed_ms = milliseconds_since(started);

    EXPECT_FALSE(first.get().from_client_fallback);
    EXPECT_TRUE(second.from_client_fallback);
    EXPECT_TRUE(server.wait_for_requests(2, 10s));  // the second did get the handle and send its request
    EXPECT_GE(elapsed_ms, 1000);                    // ... after waiting for it
    EXPECT_LT(elapsed_ms, 3750);                    // 3 s bound, 0.75 s of slack; without it 4.5 s
}

TEST(CurlTransport, TheTransportReadsTheRetryAfterSecondsOfA503AndNothingOfTheNextAnswer) {
    LoopbackServer server(LoopbackServer::Refusals{1, "2"});
    auto transport = classification::make_curl_transport(loopback_config(server));
    const HttpResult refused = transport->post("/api/classify", kBody, {});
    EXPECT_EQ(refused.status, 503);
    EXPECT_EQ(refused.retry_after, std::optional<std::chrono::milliseconds>(2s));
    const HttpResult answered = transport->post("/api/classify", kBody, {});  // the same handle and connection
    EXPECT_EQ(answered.status, 200);
    EXPECT_FALSE(answered.retry_after.has_value());
}

TEST(CurlTransport, TheTransportReadsARetryAfterHttpDate) {
    // Three seconds ahead in whole seconds, read against the local clock in whole seconds a moment later.
    LoopbackServer server(LoopbackServer::Refusals{1, http_date(std::time(nullptr) + 3)});
    auto transport = classification::make_curl_transport(loopback_config(server));
    const HttpResult refused = transport->post("/api/classify", kBody, {});
    EXPECT_EQ(refused.status, 503);
    ASSERT_TRUE(refused.retry_after.has_value());
    EXPECT_GE(*refused.retry_after, 1s);
    EXPECT_LE(*refused.retry_after, 3s);
}

TEST(CurlTransport, APredictorWaitsTheRetryAfterOfAnOverloadedAnswerBeforeTryingAgain) {
    LoopbackServer server(LoopbackServer::Refusals{1, "1"});
    ClientConfig config = loopback_config(server);
    config.retry_backoff = 1ms;  // the jitter alone would retry within 2 ms
    config.max_retry_backoff = 2ms;
    IntentPredictor predictor(config);
    EXPECT_EQ(predictor.predict("dentist near me").intent, "local");
    const auto read_at = server.read_at();
    ASSERT_EQ(read_at.size(), 2u);
    EXPECT_GE(read_at[1] - read_at[0], 1s);
    EXPECT_EQ(predictor.stats().retries, 1u);
}

TEST(CurlTransport, ARetryAfterLongerThanTheCapWaitsTheCapThenTriesAgain) {
    LoopbackServer server(LoopbackServer::Refusals{1, "3600"});
    ClientConfig config = loopback_config(server);
    config.retry_backoff = 1ms;
    config.max_retry_backoff = 2ms;
    config.max_retry_after = 1000ms;
    IntentPredictor predictor(config);
    const auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(predictor.predict("dentist near me").intent, "local");
    EXPECT_LT(milliseconds_since(started), 30000);  // an hour was asked for
    const auto read_at = server.read_at();
    ASSERT_EQ(read_at.size(), 2u);
    EXPECT_GE(read_at[1] - read_at[0], 1s);
}
