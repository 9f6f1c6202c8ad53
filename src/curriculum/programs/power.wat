(module
  (func (export "compute"){params} (result f64)
    (local $i i64) (local $acc f64)
    f64.const 1
    local.set $acc
    local.get $b
    i64.trunc_f64_s
    local.set $i
    block $done
      loop $next
        local.get $i
        i64.eqz
        br_if $done
        local.get $acc
        local.get $a
        f64.mul
        local.set $acc
        local.get $i
        i64.const 1
        i64.sub
        local.set $i
        br $next
      end
    end
    local.get $acc))
