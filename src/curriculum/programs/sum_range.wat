(module
  (func (export "compute"){params} (result f64)
    (local $i i64) (local $end i64) (local $acc i64)
    local.get $a
    i64.trunc_f64_s
    local.set $i
    local.get $b
    i64.trunc_f64_s
    local.set $end
    block $done
      loop $next
        local.get $i
        local.get $end
        i64.gt_s
        br_if $done
        local.get $acc
        local.get $i
        i64.add
        local.set $acc
        local.get $i
        i64.const 1
        i64.add
        local.set $i
        br $next
      end
    end
    local.get $acc
    f64.convert_i64_s))
