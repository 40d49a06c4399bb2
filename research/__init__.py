"""Research tooling built on the LoadGen core: the efficiency study, its report, speed micro-benchmarks,
the SUT benchmark, the GPU check and the Server peak search. Uses harness/sut/models/tasks; never
imported by them."""
