#include <gtest/gtest.h>

#include "tests/test_support.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  shmpool::test::arm_watchdog(240);
  return RUN_ALL_TESTS();
}
