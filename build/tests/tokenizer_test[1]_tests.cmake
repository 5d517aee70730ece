set(  tokenizer_test_TESTS)
