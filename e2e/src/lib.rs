//! End-to-end suites. The cluster-free local e2e and the kind suite live here.
