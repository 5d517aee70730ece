set(  gguf_test_TESTS)
