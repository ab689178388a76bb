;; exception handling in code only: try with catch_all and no tag.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (try (do nop) (catch_all))))
