;; relaxed SIMD: i32x4.relaxed_trunc_f32x4_s.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0)))))
