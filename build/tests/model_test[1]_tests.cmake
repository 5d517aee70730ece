set(  model_test_TESTS)
