(module
  (memory (export "memory") 1)
  (func (export "compute"){params} (result f64)
    (local $i i32) (local $acc f64)
    local.get $list
    f64.load
    local.set $acc
    i32.const 1
    local.set $i
    block $done
      loop $next
        local.get $i
        local.get $list_len
        i32.ge_u
        br_if $done
        local.get $acc
        local.get $list
        local.get $i
        i32.const 8
        i32.mul
        i32.add
        f64.load
        f64.add
        local.set $acc
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $next
      end
    end
    local.get $acc
    local.get $list_len
    f64.convert_i32_u
    f64.div))
