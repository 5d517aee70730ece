// Linked with every object of pagoda_core and no backend library (tests/CMakeLists.txt): the link
// fails if core/ calls into a backend implementation instead of through backends/backend.h.
int main() { return 0; }
