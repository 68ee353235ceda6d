#pragma once
/// @file summary.hpp
/// The layer table of a network: index, layer, input shape, output shape, parameters, and the running total.
#include <cstddef>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include <boost/hana/for_each.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>

#include "infer.hpp"

namespace nmfdsl {

namespace detail {
inline std::string with_separators(std::size_t v)
{
    const std::string digits = std::to_string(v);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0)
            out.push_back(',');
        out.push_back(digits[i]);
    }
    return out;
}

template <class... Es>
std::string summary_table(type_list<Es...>)
{
    struct row {
        std::string index, layer, in, out, params, total;
    };
    std::vector<row> rows{{"#", "layer", "input", "output", "params", "total"}};
    std::size_t total = 0;
    std::size_t by_group[6]{};
    boost::hana::for_each(boost::hana::tuple_t<Es...>, [&](auto e) {
        using E = typename decltype(e)::type;
        std::size_t n = 0;
        for (const auto& p : E::layer::template param_tensors<typename E::in>) {
            n += p.size;
            by_group[static_cast<std::size_t>(p.grp)] += p.size;
        }
        total += n;
        rows.push_back({std::to_string(E::index), E::layer::name(), shape_string<typename E::in>(),
                        shape_string<typename E::out>(), with_separators(n), with_separators(total)});
    });
    std::size_t w[6]{};
    for (const auto& r : rows) {
        const std::string* f[6] = {&r.index, &r.layer, &r.in, &r.out, &r.params, &r.total};
        for (int k = 0; k < 6; ++k)
            w[k] = std::max(w[k], f[k]->size());
    }
    std::ostringstream os;
    auto line = [&](const row& r) {
        os << std::right << std::setw(static_cast<int>(w[0])) << r.index << "  " << std::left
           << std::setw(static_cast<int>(w[1])) << r.layer << "  " << std::setw(static_cast<int>(w[2])) << r.in << "  "
           << std::setw(static_cast<int>(w[3])) << r.out << "  " << std::right << std::setw(static_cast<int>(w[4]))
           << r.params << "  " << std::setw(static_cast<int>(w[5])) << r.total << '\n';
    };
    std::size_t width = w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + 10;
    line(rows[0]);
    os << std::string(width, '-') << '\n';
    for (std::size_t i = 1; i < rows.size(); ++i)
        line(rows[i]);
    os << std::string(width, '-') << '\n';
    os << "total parameters: " << with_separators(total);
    const group groups[] = {group::nmf, group::mix, group::conv, group::norm, group::dense, group::other};
    std::string sep = " (";
    for (group g : groups)
        if (by_group[static_cast<std::size_t>(g)] != 0) {
            os << sep << group_name(g) << ' ' << with_separators(by_group[static_cast<std::size_t>(g)]);
            sep = ", ";
        }
    if (sep == ", ")
        os << ')';
    os << '\n';
    return os.str();
}
} // namespace detail

/// The layer table of Net applied to In, without building a Model.
template <class Net, class In>
std::string summary()
{
    return detail::summary_table(typename detail::resolve<true, Net, In>::entries{});
}

} // namespace nmfdsl
