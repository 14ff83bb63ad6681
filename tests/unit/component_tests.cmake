# Unit tests of the p/m/sComponents and their shared membership code.
# Included by tests/CMakeLists.txt (sk_unit_test links sk_kernel and gtest).
sk_unit_test(page_store_test unit/page_store_test.cpp)
target_link_libraries(page_store_test PRIVATE sk_mcomponent)

sk_unit_test(file_store_test unit/file_store_test.cpp)
target_link_libraries(file_store_test PRIVATE sk_scomponent)

sk_unit_test(component_protocol_test unit/component_protocol_test.cpp)
target_link_libraries(component_protocol_test PRIVATE sk_mcomponent sk_scomponent sk_pcomponent)

# Membership against a fake monitor over the fake fabric (fake_transport.h).
sk_unit_test(membership_client_test unit/membership_client_test.cpp)

# The P2S_ storage protocol: decoders, the sComponent's file operations on a
# tree (confinement, durability, images).
sk_unit_test(storage_protocol_test unit/storage_protocol_test.cpp)
target_link_libraries(storage_protocol_test PRIVATE sk_scomponent)

# A vNode root end to end: an sComponent over the tcp fabric and a FUSE
# mount of the storage manager (needs root and /dev/fuse; skipped without).
sk_unit_test(storage_mount_test unit/storage_mount_test.cpp)
target_link_libraries(storage_mount_test PRIVATE sk_scomponent sk_pcomponent sk_launcher)
target_compile_definitions(storage_mount_test PRIVATE
  SK_PROBE_PATH="$<TARGET_FILE:sandbox_probe>")
add_dependencies(storage_mount_test sandbox_probe)

# The memory manager (issue 4) on real worker processes against in-process
# mComponents over the tcp fabric (needs root and /dev/userfaultfd; skipped
# without).
sk_unit_test(memory_manager_test unit/memory_manager_test.cpp)
target_link_libraries(memory_manager_test PRIVATE sk_memory sk_mcomponent)

# GMM: the monitor's memory placement.
sk_unit_test(memory_placement_test unit/memory_placement_test.cpp)
target_link_libraries(memory_placement_test PRIVATE sk_monitor_lib)
