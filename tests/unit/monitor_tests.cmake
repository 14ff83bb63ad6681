# Unit tests of the monitor and the splitctl console (included by
# tests/CMakeLists.txt, which provides sk_unit_test()).
sk_unit_test(monitor_test ${CMAKE_CURRENT_LIST_DIR}/monitor_test.cpp)
target_link_libraries(monitor_test PRIVATE sk_monitor_lib)

sk_unit_test(console_test ${CMAKE_CURRENT_LIST_DIR}/console_test.cpp)
target_link_libraries(console_test PRIVATE sk_console_lib)
