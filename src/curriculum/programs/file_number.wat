(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "compute"){params} (result f64)
    (local $i i32) (local $n i32) (local $acc i64) (local $c i32) (local $seen i32)
    i32.const 3
    i32.const 0
    local.get $file
    local.get $file_len
    i32.const 0
    i64.const 2097154
    i64.const 0
    i32.const 0
    i32.const 1024
    call $path_open
    if
      unreachable
    end
    i32.const 1040
    i32.const 2048
    i32.store
    i32.const 1044
    i32.const 4096
    i32.store
    block $eof
      loop $chunk
        i32.const 1024
        i32.load
        i32.const 1040
        i32.const 1
        i32.const 1048
        call $fd_read
        if
          unreachable
        end
        i32.const 1048
        i32.load
        local.tee $n
        i32.eqz
        br_if $eof
        i32.const 0
        local.set $i
        block $scanned
          loop $byte
            local.get $i
            local.get $n
            i32.ge_u
            br_if $scanned
            i32.const 2048
            local.get $i
            i32.add
            i32.load8_u
            local.set $c
            local.get $c
            i32.const 48
            i32.sub
            i32.const 10
            i32.lt_u
            if
              local.get $acc
              i64.const 10
              i64.mul
              local.get $c
              i32.const 48
              i32.sub
              i64.extend_i32_u
              i64.add
              local.set $acc
              i32.const 1
              local.set $seen
            else
              local.get $seen
              br_if $eof
            end
            local.get $i
            i32.const 1
            i32.add
            local.set $i
            br $byte
          end
        end
        br $chunk
      end
    end
    local.get $acc
    f64.convert_i64_u))
