// Integration tests of the C++ client against a real `bentoml serve`: INFERENCE_URL (all families) and
// INFERENCE_SLOW_URL (intent models delayed by 1.5 s). tests/test_cpp_client.py starts both and runs ctest;
// without them these tests skip.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "classification/IntentPredictor.h"

using classification::ClientConfig;
using classification::IntentPrediction;
using classification::IntentPredictor;
using classification::RequestRejected;
using classification::ServiceUnavailable;
using namespace std::chrono_literals;

namespace {

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

ClientConfig server_config() {
    ClientConfig config;
    config.base_url = env("INFERENCE_URL");
    return config;
}

#define REQUIRE_SERVER()                                                              \
    if (env("INFERENCE_URL").empty()) GTEST_SKIP() << "INFERENCE_URL is not set (no server)"

#define REQUIRE_SLOW_SERVER()                                                                         \
    if (env("INFERENCE_SLOW_URL").empty()) GTEST_SKIP() << "INFERENCE_SLOW_URL is not set (no server)"

}  // namespace

TEST(Integration, APredictionComesFromTheServiceWithItsModelVersion) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.variant = "classic";
    IntentPredictor predictor(config);
    IntentPrediction p = predictor.predict("chase login");
    EXPECT_EQ(p.intent, "navigational");
    EXPECT_EQ(p.variant, "classic");
    EXPECT_EQ(p.model_version.value_or(""), "v1.0.0");
    EXPECT_FALSE(p.from_client_fallback);
    EXPECT_GT(p.confidence, 0.5);
}

TEST(Integration, TheEnsembleAnswersWhenAsked) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.variant = "ensemble";
    IntentPredictor predictor(config);
    IntentPrediction p = predictor.predict("dentist near me");
    EXPECT_EQ(p.variant, "ensemble");
    EXPECT_EQ(p.intent, "local");
    ASSERT_FALSE(p.verticals.empty());
    EXPECT_EQ(p.verticals[0].vertical, "health");
}

TEST(Integration, AnEmptyTextIsRejectedWithTheServicesCode) {
    REQUIRE_SERVER();
    IntentPredictor predictor(server_config());
    try {
        predictor.predict("   ");
        FAIL() << "expected RequestRejected";
    } catch (const RequestRejected& rejected) {
        EXPECT_EQ(rejected.status(), 400);
        EXPECT_EQ(rejected.code(), "invalid_text");
    }
    EXPECT_EQ(predictor.stats().requests, 1u);
}

TEST(Integration, ABadVariantHeaderIsRejectedNamingTheHeader) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.variant = "bogus";
    IntentPredictor predictor(config);
    try {
        predictor.predict("x");
        FAIL() << "expected RequestRejected";
    } catch (const RequestRejected& rejected) {
        EXPECT_NE(std::string(rejected.what()).find("X-Model-Preference"), std::string::npos);
    }
}

TEST(Integration, ABatchAnswersInOrderWithPerTextErrors) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.variant = "classic";
    IntentPredictor predictor(config);
    auto outcomes = predictor.predict_batch({"chase login", "   ", "dentist near me"});
    ASSERT_EQ(outcomes.size(), 3u);
    EXPECT_EQ(outcomes[0].prediction->intent, "navigational");
    EXPECT_FALSE(outcomes[1].ok());
    EXPECT_EQ(outcomes[1].error_code, "invalid_text");
    EXPECT_EQ(outcomes[2].prediction->intent, "local");
}

TEST(Integration, TheSameUserGetsTheSameVariantEveryTime) {
    REQUIRE_SERVER();
    IntentPredictor predictor(server_config());
    const std::string first = predictor.predict("weather tomorrow", std::string("u-7")).variant;
    for (int i = 0; i < 5; ++i) EXPECT_EQ(predictor.predict("weather tomorrow", std::string("u-7")).variant, first);
}

TEST(Integration, ConnectionsAreReusedAcrossManyCalls) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.pool_size = 2;
    IntentPredictor predictor(config);
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(predictor.predict("chase login").from_client_fallback);
    EXPECT_EQ(predictor.stats().requests, 100u);
    EXPECT_EQ(predictor.stats().retries, 0u);
}

TEST(Integration, ConcurrentCallsAreCoalescedIntoBatchesWithTheSameAnswers) {
    REQUIRE_SERVER();
    ClientConfig config = server_config();
    config.variant = "classic";
    config.batch_window = 20ms;
    IntentPredictor predictor(config);
    std::atomic<int> navigational{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 32; ++i) threads.emplace_back([&] { navigational += predictor.predict("chase login").intent == "navigational"; });
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(navigational.load(), 32);
    EXPECT_LE(predictor.stats().batches, 6u);
}

TEST(Integration, AClosedPortFallsBackAfterTheRetries) {
    ClientConfig config;
    config.base_url = "http://127.0.0.1:9";  // discard port: nothing listens
    config.retry_backoff = 5ms;
    IntentPredictor predictor(config);
    IntentPrediction p = predictor.predict("x");
    EXPECT_TRUE(p.from_client_fallback);
    EXPECT_EQ(p.intent, "informational");
    EXPECT_EQ(predictor.stats().requests, 4u);
}

TEST(Integration, AClosedPortWithoutDefaultRaisesServiceUnavailable) {
    ClientConfig config;
    config.base_url = "http://127.0.0.1:9";
    config.retry_backoff = 5ms;
    config.default_intent.reset();
    IntentPredictor predictor(config);
    EXPECT_THROW(predictor.predict("x"), ServiceUnavailable);
}

TEST(Integration, ASlowServiceTimesOutQuicklyAndTheDefaultAnswers) {
    REQUIRE_SLOW_SERVER();
    ClientConfig config;
    config.base_url = env("INFERENCE_SLOW_URL");
    config.total_timeout = 300ms;
    config.default_intent = "navigational";
    IntentPredictor predictor(config);
    const auto started = std::chrono::steady_clock::now();
    IntentPrediction p = predictor.predict("dentist near me");
    const auto elapsed = std::chrono::steady_clock::now() - started;
    EXPECT_TRUE(p.from_client_fallback);
    EXPECT_EQ(p.intent, "navigational");
    EXPECT_LT(elapsed, 1s);  // one attempt: a timeout is not retried
}

TEST(Integration, ASlowServiceWithoutDefaultSaysItTimedOut) {
    REQUIRE_SLOW_SERVER();
    ClientConfig config;
    config.base_url = env("INFERENCE_SLOW_URL");
    config.total_timeout = 300ms;
    config.default_intent.reset();
    IntentPredictor predictor(config);
    try {
        predictor.predict("dentist near me");
        FAIL() << "expected ServiceUnavailable";
    } catch (const ServiceUnavailable& error) {
        EXPECT_TRUE(error.timed_out());
    }
}

TEST(Integration, APatientClientWaitsForTheSlowService) {
    REQUIRE_SLOW_SERVER();
    ClientConfig config;
    config.base_url = env("INFERENCE_SLOW_URL");
    config.total_timeout = 10000ms;
    config.variant = "classic";
    IntentPredictor predictor(config);
    EXPECT_FALSE(predictor.predict("chase login").from_client_fallback);
}

TEST(Integration, CallersWaitingForABusyConnectionFallBackWithinTheirTimeout) {
    REQUIRE_SLOW_SERVER();
    ClientConfig config;
    config.base_url = env("INFERENCE_SLOW_URL");
    config.pool_size = 1;  // one connection, held by a slow request: the others wait for it at most total_timeout
    config.total_timeout = 300ms;
    IntentPredictor predictor(config);
    std::atomic<int> fallbacks{0};
    std::vector<std::thread> threads;
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < 6; ++i) threads.emplace_back([&] { fallbacks += predictor.predict("dentist near me").from_client_fallback; });
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(fallbacks.load(), 6);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms);  // no caller queued behind six slow requests
}
