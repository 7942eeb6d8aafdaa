// What IntentPredictor adds to a request over a bare curl call: sequential POST /api/classify to a running server,
// in alternating blocks so that both see the same server state. Usage: bench_intent_client URL [REQUESTS]
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "classification/IntentPredictor.h"

namespace {

using Clock = std::chrono::steady_clock;

std::size_t keep(char* data, std::size_t size, std::size_t count, void* body) {
    static_cast<std::string*>(body)->append(data, size * count);
    return size * count;
}

double percentile(std::vector<double> samples, double share) {
    std::sort(samples.begin(), samples.end());
    return samples[static_cast<std::size_t>(share * static_cast<double>(samples.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s URL [REQUESTS]\n", argv[0]);
        return 2;
    }
    const std::string url = argv[1];
    const int requests = argc > 2 ? std::stoi(argv[2]) : 2000;
    const std::string text = "chase login";
    const std::string body = "{\"text\":\"" + text + "\"}";

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL* raw = curl_easy_init();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, "X-Model-Preference: classic");
    const std::string endpoint = url + "/api/classify";
    std::string sink;
    curl_easy_setopt(raw, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(raw, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(raw, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(raw, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(raw, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(raw, CURLOPT_NOSIGNAL, 1L);

    classification::ClientConfig config;
    config.base_url = url;
    config.variant = "classic";
    config.default_intent.reset();  // a failure must show, not be replaced
    classification::IntentPredictor predictor(config);

    std::vector<double> curl_ms, client_ms;
    const int block = 100;
    for (int done = 0; done < requests; done += block) {
        for (int i = 0; i < block; ++i) {
            sink.clear();
            const auto started = Clock::now();
            const CURLcode code = curl_easy_perform(raw);
            curl_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
            long status = 0;
            curl_easy_getinfo(raw, CURLINFO_RESPONSE_CODE, &status);
            if (code != CURLE_OK || status != 200 || sink.find("\"intent\"") == std::string::npos) {
                std::fprintf(stderr, "bare curl request failed: %s, HTTP %ld: %s\n", curl_easy_strerror(code), status,
                             sink.substr(0, 300).c_str());
                return 1;
            }
        }
        for (int i = 0; i < block; ++i) {
            const auto started = Clock::now();
            if (predictor.predict(text).intent.empty()) return 1;
            client_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
        }
    }
    const double curl_p50 = percentile(curl_ms, 0.5), curl_p95 = percentile(curl_ms, 0.95);
    const double client_p50 = percentile(client_ms, 0.5), client_p95 = percentile(client_ms, 0.95);
    std::printf("| path | P50 ms | P95 ms |\n|---|---|---|\n");
    std::printf("| raw curl, reused handle | %.3f | %.3f |\n", curl_p50, curl_p95);
    std::printf("| IntentPredictor::predict | %.3f | %.3f |\n", client_p50, client_p95);
    std::printf("overhead_p50_ms=%.3f overhead_p95_ms=%.3f requests=%d\n", client_p50 - curl_p50,
                client_p95 - curl_p95, static_cast<int>(client_ms.size()));
    curl_slist_free_all(headers);
    curl_easy_cleanup(raw);
    return 0;
}
