# Unit tests of the monitor and the splitctl console (included by
# tests/CMakeLists.txt, which provides sk_unit_test()).
sk_unit_test(monitor_test ${CMAKE_CURRENT_LIST_DIR}/monitor_test.cpp)
target_link_libraries(monitor_test PRIVATE sk_monitor_lib)

sk_unit_test(console_test ${CMAKE_CURRENT_LIST_DIR}/console_test.cpp)
target_link_libraries(console_test PRIVATE sk_console_lib)

# The process protocol's messages (run, ps, stats).
sk_unit_test(process_messages_test ${CMAKE_CURRENT_LIST_DIR}/process_messages_test.cpp)

# `splitctl run` end to end on loopback: the console's client, the real
# monitor and a scripted pComponent.
sk_unit_test(run_client_test ${CMAKE_CURRENT_LIST_DIR}/run_client_test.cpp)
target_link_libraries(run_client_test PRIVATE sk_monitor_lib sk_console_lib)

# The pComponent's process manager with the real launcher (needs root; it
# skips otherwise), on a tree holding the static sandbox_probe.
sk_unit_test(process_manager_test ${CMAKE_CURRENT_LIST_DIR}/process_manager_test.cpp)
target_link_libraries(process_manager_test PRIVATE sk_processes sk_launcher)
target_compile_definitions(process_manager_test PRIVATE
  SK_PROBE_PATH="$<TARGET_FILE:sandbox_probe>")
add_dependencies(process_manager_test sandbox_probe)
