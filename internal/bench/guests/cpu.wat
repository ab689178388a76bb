;; cpu is the bench's CPU-heavy guest: 1 million rounds of an xorshift-multiply mix, then it
;; writes the low byte of the result as one hex digit pair and "\n" to stdout. No stdin.
;; Build: wat2wasm cpu.wat -o cpu.wasm (the .wasm is committed and embedded by bench.go).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "0123456789abcdef")
  (func (export "_start")
    (local $i i32) (local $x i64)
    (local.set $x (i64.const 88172645463325252))
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const 1000000)))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        (local.set $x (i64.mul (local.get $x) (i64.const 2685821657736338717)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
    ;; "hh\n" at 64: two hex digits of the low byte
    (i32.store8 (i32.const 64)
      (i32.load8_u (i32.add (i32.const 32) (i32.wrap_i64 (i64.and (i64.shr_u (local.get $x) (i64.const 4)) (i64.const 15))))))
    (i32.store8 (i32.const 65)
      (i32.load8_u (i32.add (i32.const 32) (i32.wrap_i64 (i64.and (local.get $x) (i64.const 15))))))
    (i32.store8 (i32.const 66) (i32.const 10))
    ;; iovec at 0: {64, 3}; written count at 8
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
