(module
  (func (export "compute"){params} (result f64)
    (local $v i64) (local $d i64)
    local.get $n
    i64.trunc_f64_s
    local.set $v
    local.get $v
    i64.const 2
    i64.lt_s
    if
      f64.const 0
      return
    end
    i64.const 2
    local.set $d
    block $done
      loop $next
        local.get $d
        local.get $d
        i64.mul
        local.get $v
        i64.gt_s
        br_if $done
        local.get $v
        local.get $d
        i64.rem_s
        i64.eqz
        if
          f64.const 0
          return
        end
        local.get $d
        i64.const 1
        i64.add
        local.set $d
        br $next
      end
    end
    f64.const 1))
