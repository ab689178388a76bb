;; echo copies all of stdin to stdout: fd_read until it reads 0 bytes, writing what it read
;; (looping over partial writes). Any WASI error exits with code 1.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; layout: iovec at 0, count at 8, buffer of 64 KiB at 65536
  (global $buf i32 (i32.const 65536))
  (global $bufsize i32 (i32.const 65536))

  ;; write_all writes len bytes at ptr to fd, looping over partial writes.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $again))))

  (func (export "_start")
    (local $n i32)
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (global.get $buf))
        (i32.store (i32.const 4) (global.get $bufsize))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $write_all (i32.const 1) (global.get $buf) (local.get $n))
        (br $read)))))
