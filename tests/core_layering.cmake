# core/ is the engine over the Backend interface: it includes backends/backend.h and nothing else
# of backends/ (no backend implementation, no GPU API header). Run as a CTest:
#   cmake -DSRC=<repo root> -P tests/core_layering.cmake
# The link graph says the same (pagoda_core links only pagoda_backend_api); this check names the
# offending line when someone adds such an include.
file(GLOB_RECURSE _sources "${SRC}/core/*.h" "${SRC}/core/*.cpp" "${SRC}/core/*.inc")
set(_bad "")
foreach(_f IN LISTS _sources)
  file(STRINGS "${_f}" _lines REGEX "^[ \t]*#[ \t]*include")
  foreach(_l IN LISTS _lines)
    if(_l MATCHES "[\"<]backends/" AND NOT _l MATCHES "[\"<]backends/backend\\.h[\">]")
      string(APPEND _bad "\n  ${_f}: ${_l}")
    elseif(_l MATCHES "[\"<](vulkan/|cuda|cublas|volk|shaderc)")
      string(APPEND _bad "\n  ${_f}: ${_l}")
    endif()
  endforeach()
endforeach()
if(_bad)
  message(FATAL_ERROR "core/ may include only backends/backend.h of the backends:${_bad}")
endif()
list(LENGTH _sources _n)
message(STATUS "core layering: ${_n} files include no backend implementation")
