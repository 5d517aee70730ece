# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
include("/work/main/build/tests/gguf_test[1]_include.cmake")
include("/work/main/build/tests/tokenizer_test[1]_include.cmake")
include("/work/main/build/tests/cpu_ops_test[1]_include.cmake")
include("/work/main/build/tests/model_test[1]_include.cmake")
include("/work/main/build/tests/sample_test[1]_include.cmake")
include("/work/main/build/tests/kv_test[1]_include.cmake")
include("/work/main/build/tests/engine_test[1]_include.cmake")
include("/work/main/build/tests/spec_test[1]_include.cmake")
include("/work/main/build/tests/conformance_test[1]_include.cmake")
include("/work/main/build/tests/cli_test[1]_include.cmake")
include("/work/main/build/tests/server_test[1]_include.cmake")
include("/work/main/build/tests/inspector_test[1]_include.cmake")
