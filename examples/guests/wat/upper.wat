;; upper is a WasmWiz guest written by hand in WebAssembly text: it copies stdin to stdout in
;; upper case (ASCII letters), with nothing but WASI preview 1's fd_read and fd_write.
;;
;;   wat2wasm upper.wat -o upper-wat.wasm
;;   wasmwiz run --stdin 'hello, wasm' upper-wat.wasm
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Memory: an iovec {buf, len} at 0, a byte count at 8, the buffer at 1024 (4096 bytes).
  (func (export "_start")
    (local $n i32) (local $i i32) (local $c i32) (local $off i32)
    (block $done
      (loop $read
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        ;; fd_read(stdin, iovs, 1, &n): stop on an error or at the end of stdin
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        ;; a-z to A-Z
        (local.set $i (i32.const 0))
        (block $upped
          (loop $up
            (br_if $upped (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
            (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
              (then (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.sub (local.get $c) (i32.const 32)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $up)))
        ;; fd_write(stdout, …) until all n bytes are written
        (local.set $off (i32.const 0))
        (block $written
          (loop $write
            (br_if $written (i32.ge_u (local.get $off) (local.get $n)))
            (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $off)))
            (i32.store (i32.const 4) (i32.sub (local.get $n) (local.get $off)))
            (br_if $done (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $off (i32.add (local.get $off) (i32.load (i32.const 8))))
            (br $write)))
        (br $read)))))
