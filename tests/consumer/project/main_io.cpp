// The I/O component: a missing data file is reported as a data_error naming it.
#include <iostream>

#include <nmfdsl/io.hpp>

int main()
{
    try {
        nmfdsl::data::load_idx("no-such-images.gz", "no-such-labels.gz");
    } catch (const nmfdsl::data_error& e) {
        const bool ok = std::string(e.what()).find("no-such-images.gz") != std::string::npos;
        std::cout << (ok ? "consumer_io ok\n" : "consumer_io FAILED\n");
        return ok ? 0 : 1;
    }
    std::cout << "consumer_io FAILED: no error\n";
    return 1;
}
