(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "compute"){params} (result f64)
    (local $z i64) (local $era i64) (local $doe i64) (local $yoe i64) (local $mp i64)
    i32.const 0
    i64.const 1000000000
    i32.const 1024
    call $clock_time_get
    if
      unreachable
    end
    i32.const 1024
    i64.load
    i64.const 86400000000000
    i64.div_u
    i64.const 719468
    i64.add
    local.set $z
    local.get $z
    i64.const 146097
    i64.div_s
    local.set $era
    local.get $z
    local.get $era
    i64.const 146097
    i64.mul
    i64.sub
    local.set $doe
    local.get $doe
    local.get $doe
    i64.const 1460
    i64.div_s
    i64.sub
    local.get $doe
    i64.const 36524
    i64.div_s
    i64.add
    local.get $doe
    i64.const 146096
    i64.div_s
    i64.sub
    i64.const 365
    i64.div_s
    local.set $yoe
    local.get $doe
    local.get $yoe
    i64.const 365
    i64.mul
    local.get $yoe
    i64.const 4
    i64.div_s
    i64.add
    local.get $yoe
    i64.const 100
    i64.div_s
    i64.sub
    i64.sub
    i64.const 5
    i64.mul
    i64.const 2
    i64.add
    i64.const 153
    i64.div_s
    local.set $mp
    local.get $yoe
    local.get $era
    i64.const 400
    i64.mul
    i64.add
    local.get $mp
    i64.const 10
    i64.ge_s
    i64.extend_i32_u
    i64.add
    f64.convert_i64_s))
