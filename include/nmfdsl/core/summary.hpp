#pragma once
/// @file summary.hpp
/// The layer table of a network: path, layer (indented inside graph layers), input and output shapes, parameters
/// and the running total.
#include <array>
#include <cstddef>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "infer.hpp"
#include "params.hpp"
#include "tree.hpp"

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

/// The layer table of a resolved network: one row per layer of the tree (a branch's layers indented under their
/// graph layer), with path, shapes, parameters and the running total (counted at the layers that own tensors).
template <class Entries>
std::string summary_table()
{
    struct row {
        std::string path, layer, in, out, params, total;
    };
    std::vector<row> rows{{"path", "layer", "input", "output", "params", "total"}};
    std::size_t total = 0;
    std::array<std::size_t, group_count> by_group{};
    typename engine<Entries>::options opts{};
    auto visit = [&](const auto& node) {
        using N = std::decay_t<decltype(node)>;
        std::size_t n = 0;
        for (const auto& p : N::specs) {
            n += p.size;
            if (!N::is_graph)
                by_group[static_cast<std::size_t>(p.grp)] += p.size;
        }
        if (!N::is_graph)
            total += n;
        rows.push_back({node.path, std::string(2 * node.depth, ' ') + N::name(),
                        shape_string<typename N::in_shape>(), shape_string<typename N::out_shape>(),
                        with_separators(n), N::is_graph ? std::string() : with_separators(total)});
    };
    const float* none = nullptr;
    walk_tree<Entries>("", 0, opts, none, none, none, visit);
    std::size_t w[6]{};
    for (const auto& r : rows) {
        const std::string* f[6] = {&r.path, &r.layer, &r.in, &r.out, &r.params, &r.total};
        for (int k = 0; k < 6; ++k)
            w[k] = std::max(w[k], f[k]->size());
    }
    std::ostringstream os;
    auto line = [&](const row& r) {
        os << std::left << std::setw(static_cast<int>(w[0])) << r.path << "  " << std::setw(static_cast<int>(w[1]))
           << r.layer << "  " << std::setw(static_cast<int>(w[2])) << r.in << "  " << std::setw(static_cast<int>(w[3]))
           << r.out << "  " << std::right << std::setw(static_cast<int>(w[4])) << r.params << "  "
           << std::setw(static_cast<int>(w[5])) << r.total << '\n';
    };
    std::size_t width = w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + 10;
    line(rows[0]);
    os << std::string(width, '-') << '\n';
    for (std::size_t i = 1; i < rows.size(); ++i)
        line(rows[i]);
    os << std::string(width, '-') << '\n';
    os << "total parameters: " << with_separators(total);
    std::string sep = " (";
    for (const auto& g : parameter_groups)
        if (by_group[static_cast<std::size_t>(g.id)] != 0) {
            os << sep << g.name << ' ' << with_separators(by_group[static_cast<std::size_t>(g.id)]);
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
    return detail::summary_table<typename detail::resolve<true, Net, In>::entries>();
}

} // namespace nmfdsl
