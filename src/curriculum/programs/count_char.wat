(module
  (memory (export "memory") 1)
  (func (export "compute"){params} (result f64)
    (local $i i32) (local $count i32) (local $c i32)
    local.get $char
    i32.load8_u
    local.set $c
    block $done
      loop $next
        local.get $i
        local.get $text_len
        i32.ge_u
        br_if $done
        local.get $text
        local.get $i
        i32.add
        i32.load8_u
        local.get $c
        i32.eq
        local.get $count
        i32.add
        local.set $count
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $next
      end
    end
    local.get $count
    f64.convert_i32_u))
