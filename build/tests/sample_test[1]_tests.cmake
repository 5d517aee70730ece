set(  sample_test_TESTS)
