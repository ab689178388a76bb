;; threads in code only: an atomic fence on an unshared memory.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (atomic.fence)))
