(module
  (func (export "compute"){params} (result f64)
    (local $i i64) (local $acc i64)
    local.get $n
    i64.trunc_f64_s
    local.set $i
    block $done
      loop $next
        local.get $i
        i64.eqz
        br_if $done
        local.get $acc
        i64.const 10
        i64.mul
        local.get $i
        i64.const 10
        i64.rem_s
        i64.add
        local.set $acc
        local.get $i
        i64.const 10
        i64.div_s
        local.set $i
        br $next
      end
    end
    local.get $acc
    f64.convert_i64_s))
