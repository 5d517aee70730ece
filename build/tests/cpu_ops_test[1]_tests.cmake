set(  cpu_ops_test_TESTS)
