// The curl transport against a loopback HTTP server of the test's own: pooled handles keep their connections,
// and one deadline bounds an attempt, waiting for a pooled handle included.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "classification/IntentPredictor.h"
#include "loopback_server.h"
#include "starting_gate.h"

using classification::ClientConfig;
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
