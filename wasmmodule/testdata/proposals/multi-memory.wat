;; multi-memory: two memories.
(module
  (memory (export "memory") 1)
  (memory $m2 1)
  (func (export "_start")
    (drop (i32.load $m2 (i32.const 0)))))
