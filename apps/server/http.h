// The one place that includes cpp-httplib. The system package ships httplib as a compiled library
// (libcpp-httplib.so) built with TLS, zlib and brotli; those macros change struct layouts (Request
// gains an SSL pointer, ClientImpl gains TLS fields), so every translation unit that touches httplib
// must see the same definitions as the library did, or objects are sized differently on each side.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif

#include <httplib.h>
