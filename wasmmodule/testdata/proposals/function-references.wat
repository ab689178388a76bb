;; typed function references: call_ref (wabt's encoding, before the type immediate was added).
(module
  (type $v (func))
  (memory (export "memory") 1)
  (func $f)
  (elem declare func $f)
  (func (export "_start")
    (call_ref (ref.func $f))))
