;; exception handling: a tag, try/catch (the legacy encoding wabt emits) and throw.
(module
  (tag $e (param i32))
  (memory (export "memory") 1)
  (func (export "_start")
    (try (do (throw $e (i32.const 1))) (catch $e drop))))
