#pragma once
/// @file function_ref.hpp
/// function_ref<R(Args...)>: a non-owning reference to a callable (an object pointer and a call thunk), cheap to
/// copy and pass by value. The big kernels and the thread pool take their callbacks (row sources and sinks, tasks)
/// through it, so each is compiled once per scalar type instead of once per calling lambda — the calls are per tile,
/// block or task, where one indirect call costs nothing measurable. The referenced callable object (a lambda or a
/// functor; wrap a plain function in a lambda) must outlive the call.
#include <memory>
#include <type_traits>
#include <utility>

namespace nmfdsl {

template <class Signature>
class function_ref;

template <class R, class... Args>
class function_ref<R(Args...)> {
public:
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, function_ref> && std::is_invocable_r_v<R, F&, Args...>)
    function_ref(F&& f) noexcept  // NOLINT(google-explicit-constructor): converts like a function pointer
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* object, Args... args) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
          })
    {
    }

    R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

private:
    void* object_;
    R (*call_)(void*, Args...);
};

} // namespace nmfdsl
