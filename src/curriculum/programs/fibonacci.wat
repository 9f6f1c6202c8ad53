(module
  (func (export "compute"){params} (result f64)
    (local $i i64) (local $prev i64) (local $cur i64) (local $next i64)
    i64.const 1
    local.set $cur
    i64.const 1
    local.set $i
    block $done
      loop $next
        local.get $i
        local.get $n
        i64.trunc_f64_s
        i64.ge_s
        br_if $done
        local.get $prev
        local.get $cur
        i64.add
        local.set $next
        local.get $cur
        local.set $prev
        local.get $next
        local.set $cur
        local.get $i
        i64.const 1
        i64.add
        local.set $i
        br $next
      end
    end
    local.get $cur
    f64.convert_i64_s))
