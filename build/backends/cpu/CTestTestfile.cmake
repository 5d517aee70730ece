# CMake generated Testfile for 
# Source directory: /work/main/backends/cpu
# Build directory: /work/main/build/backends/cpu
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
