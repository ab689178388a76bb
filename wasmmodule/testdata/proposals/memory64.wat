;; memory64: a memory indexed by i64.
(module
  (memory (export "memory") i64 1)
  (func (export "_start")))
