/* Field checks shared by the form pages: the same rules the domain applies (domain/values.py, domain/form.py),
   run as a person types, so they learn at once what the API would refuse. */
"use strict";

const Check = (() => {
  const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const CHECK = "10X98765432";
  const PROVINCES = new Set([11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
    50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82]);
  function checkDigit(first17) {
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += Number(first17[i]) * WEIGHTS[i];
    return CHECK[sum % 11];
  }
  /* The same rules as domain/values.py validate_resident_id, so a person learns at once, not after submitting. */
  function residentId(raw) {
    const value = raw.trim().toUpperCase();
    const match = /^[1-9]\d{5}(\d{4})(\d{2})(\d{2})\d{3}[\dX]$/.exec(value);
    if (!match) return "身份证号应为18位：前17位为数字，最后一位为数字或X";
    if (!PROVINCES.has(Number(value.slice(0, 2)))) return "身份证号前两位不是有效的省级行政区划代码";
    const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
    const born = new Date(Date.UTC(year, month - 1, day));
    if (born.getUTCFullYear() !== year || born.getUTCMonth() !== month - 1 || born.getUTCDate() !== day) {
      return "身份证号中的出生日期不存在";
    }
    if (year < 1900 || born.getTime() > Date.now()) return "身份证号中的出生日期不可能";
    if (checkDigit(value.slice(0, 17)) !== value[17]) return "身份证号校验码不正确，请逐位核对";
    return "";
  }
  function amount(raw) {
    if (!/^\d{1,12}(\.\d{1,2})?$/.test(raw.trim())) return "请填写金额（元），不能为负数，最多两位小数，如 18000.00";
    return "";
  }
  function whole(raw, min, max, what) {
    const value = raw.trim();
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) return `${what}应为 ${min}–${max} 的整数`;
    return "";
  }
  const RULES = {
    id: residentId, amount,
    region: v => (/^[1-9]\d{5}$/.test(v.trim()) ? "" : "行政区划代码为6位数字，如 450103"),
    size: v => whole(v, 1, 30, "家庭人口数"),
    count: v => whole(v, 0, 20, "人数"),
    age: v => whole(v, 0, 130, "年龄"),
  };
  return { residentId, amount, RULES };
})();
