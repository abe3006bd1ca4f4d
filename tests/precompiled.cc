// The object file that carries tests/precompiled.h (see CMakeLists.txt).
