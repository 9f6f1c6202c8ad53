(module
  (func (export "compute"){params} (result f64)
    (local $x i64) (local $y i64) (local $t i64)
    local.get $a
    i64.trunc_f64_s
    local.set $x
    local.get $b
    i64.trunc_f64_s
    local.set $y
    block $done
      loop $next
        local.get $y
        i64.eqz
        br_if $done
        local.get $x
        local.get $y
        i64.rem_s
        local.set $t
        local.get $y
        local.set $x
        local.get $t
        local.set $y
        br $next
      end
    end
    local.get $x
    f64.convert_i64_s))
