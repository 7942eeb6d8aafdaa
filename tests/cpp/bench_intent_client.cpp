// What IntentPredictor adds to a request over a bare curl call: sequential POST /api/classify to a running server,
// the bare call and the client taking turns request by request, so that both see the same server state; once with
// one text repeated (result-cache hits) and once with a new text per request (model calls).
// Usage: bench_intent_client URL [REQUESTS]
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
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

double milliseconds_since(Clock::time_point started) {
    return std::chrono::duration<double, std::milli>(Clock::now() - started).count();
}

// One measurement: `requests` sequential requests through each path, alternating request by request (bare call,
// client, bare call, ...). `text_of(n)` gives the n-th text: the same one every time (a result-cache hit after the
// first) or a new one (a model call). With `model_calls`, an answer from the service's cache fails the run: the
// figure would not be what it says.
template <typename TextOf>
bool measure(CURL* raw, const std::string& endpoint, classification::IntentPredictor& predictor, int requests,
             TextOf text_of, bool model_calls, const char* label) {
    std::vector<double> curl_ms, client_ms;
    std::string sink, body;
    int cached = 0;
    curl_easy_setopt(raw, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(raw, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(raw, CURLOPT_WRITEDATA, &sink);
    for (int n = 0; n < 2 * requests; n += 2) {
        sink.clear();
        body = "{\"text\":\"" + text_of(n) + "\"}";  // plain ASCII texts: nothing to escape
        curl_easy_setopt(raw, CURLOPT_POSTFIELDS, body.c_str());
        auto started = Clock::now();
        const CURLcode code = curl_easy_perform(raw);
        curl_ms.push_back(milliseconds_since(started));
        long status = 0;
        curl_easy_getinfo(raw, CURLINFO_RESPONSE_CODE, &status);
        if (code != CURLE_OK || status != 200) {
            std::fprintf(stderr, "bare curl request failed: %s, HTTP %ld: %s\n", curl_easy_strerror(code), status,
                         sink.substr(0, 300).c_str());
            return false;
        }
        const bool curl_cached = classification::detail::parse_prediction(sink).cached;

        const std::string text = text_of(n + 1);
        started = Clock::now();
        const classification::IntentPrediction prediction = predictor.predict(text);
        client_ms.push_back(milliseconds_since(started));
        cached += curl_cached + prediction.cached;
        if (model_calls && (curl_cached || prediction.cached)) {
            std::fprintf(stderr, "%s: an answer came from the service's cache; this run measures model calls\n", label);
            return false;
        }
    }
    const double curl_p50 = percentile(curl_ms, 0.5), curl_p95 = percentile(curl_ms, 0.95);
    const double client_p50 = percentile(client_ms, 0.5), client_p95 = percentile(client_ms, 0.95);
    std::printf("%s (%d of %d answers from the service's cache)\n", label, cached, 2 * requests);
    std::printf("| path | P50 ms | P95 ms |\n|---|---|---|\n");
    std::printf("| raw curl, reused handle | %.3f | %.3f |\n", curl_p50, curl_p95);
    std::printf("| IntentPredictor::predict | %.3f | %.3f |\n", client_p50, client_p95);
    std::printf("%s overhead_p50_ms=%.3f overhead_p95_ms=%.3f requests=%d\n\n", label, client_p50 - curl_p50,
                client_p95 - curl_p95, static_cast<int>(client_ms.size()));
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s URL [REQUESTS]\n", argv[0]);
        return 2;
    }
    const std::string url = argv[1];
    const int requests = argc > 2 ? std::stoi(argv[2]) : 2000;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL* raw = curl_easy_init();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, "X-Model-Preference: classic");
    curl_easy_setopt(raw, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(raw, CURLOPT_NOSIGNAL, 1L);

    classification::ClientConfig config;
    config.base_url = url;
    config.variant = "classic";
    config.default_intent.reset();  // a failure must show, not be replaced
    classification::IntentPredictor predictor(config);

    // The same text every time: after the first call, the service answers from its result cache, so the figure
    // is the client's cost against the cheapest answer the service gives.
    const auto same = [](int) { return std::string("chase login"); };
    // A text never sent before on every call (this run's start time keeps runs apart): every answer is a model
    // call, as for an application whose queries rarely repeat.
    const std::string run_tag = std::to_string(Clock::now().time_since_epoch().count());
    const auto distinct = [&run_tag](int n) { return "cheap flights to city " + std::to_string(n) + " " + run_tag; };
    const std::string endpoint = url + "/api/classify";
    bool ok = false;
    try {
        ok = measure(raw, endpoint, predictor, requests, same, false, "same_text") &&
             measure(raw, endpoint, predictor, requests, distinct, true, "distinct_texts");
    } catch (const std::exception& error) {  // the service refused a request, did not answer, or not as the API
        std::fprintf(stderr, "request failed: %s\n", error.what());
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(raw);
    return ok ? 0 : 1;
}
