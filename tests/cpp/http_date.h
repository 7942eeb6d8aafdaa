// An HTTP-date (IMF-fixdate, "Wed, 21 Oct 2015 07:28:00 GMT") for the Retry-After tests.
#pragma once

#include <ctime>
#include <string>

inline std::string http_date(std::time_t when) {
    std::tm parts{};
    gmtime_r(&when, &parts);
    char text[64];
    std::strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &parts);  // the C locale's day and month names
    return text;
}
