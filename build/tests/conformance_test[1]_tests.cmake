set(  conformance_test_TESTS)
