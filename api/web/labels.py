"""Chinese (zh-CN) names of the API's codes, shared by the page templates and the pages' scripts (one source).

The API speaks in stable codes (`especially_difficult`, `in_publicity`, ...); people read these names. A code
without a name here is shown as it is, so a value added to the API later still appears, untranslated.
"""

from __future__ import annotations

from typing import Final

from api.routes.audit import EVENT_LABELS, ROLE_LABELS

STATUS: Final = {
    "applied": "已提交申请", "verified": "身份已核验", "assessed": "已定量评价", "evaluated": "已民主评议",
    "rated": "学校已认定", "in_publicity": "公示中", "confirmed": "认定已确认", "archived": "已建档备案",
    "withdrawn": "已撤回", "revoked": "已撤销资格", "not_identified": "未认定",
}
# What the case waits for at each status, as the applicant reads it on the progress panel.
AWAITING: Final = {
    "applied": "等待学校资助管理机构核验身份", "verified": "等待学校进行定量评价",
    "assessed": "等待班级认定评议小组民主评议（数据比对确认的特殊群体可直接由学校认定）",
    "evaluated": "等待学校作出认定", "rated": "等待学校开启结果公示",
    "in_publicity": "公示期内，可对认定结果提出异议；期满无异议即确认",
    "confirmed": "认定已确认，等待建档备案", "archived": "已建档备案，可查看资助与帮扶安排",
    "withdrawn": "申请已撤回", "revoked": "认定资格已撤销", "not_identified": "未被认定为家庭经济困难学生",
}
# The main line of the procedure (Guangxi Art. 8), in order, for the progress panel.
STEPS: Final = [
    ("applied", "个人申请"), ("verified", "身份核验"), ("assessed", "定量评价"), ("evaluated", "民主评议"),
    ("rated", "学校认定"), ("in_publicity", "结果公示"), ("confirmed", "认定确认"), ("archived", "建档备案"),
]
LEVEL: Final = {"especially_difficult": "特别困难", "difficult": "比较困难", "generally_difficult": "一般困难",
                "not_identified": "不予认定", "none": "未定级"}
CATEGORY: Final = {
    "poverty_alleviated": "脱贫家庭", "monitored_household": "监测对象",
    "minimum_living_allowance": "最低生活保障家庭（低保）",
    "extreme_poverty_support": "特困供养", "orphan": "孤儿/事实无人抚养儿童", "disabled": "残疾学生及残疾人子女",
    "martyr_family": "烈士子女", "needy_worker_family": "建档困难职工家庭", "near_minimum_living": "低保边缘家庭",
    "expenditure_hardship": "支出型困难家庭",
}
STAGE: Final = {
    "preschool": "学前教育", "primary": "小学", "junior_secondary": "初中", "senior_secondary": "普通高中",
    "secondary_vocational": "中等职业教育", "higher_vocational": "高等职业教育", "undergraduate": "本科",
    "postgraduate": "研究生",
}
RELATION: Final = {"father": "父亲", "mother": "母亲", "grandfather": "祖父/外祖父", "grandmother": "祖母/外祖母",
                   "sibling": "兄弟姐妹", "guardian": "其他监护人", "other": "其他"}
OCCUPATION: Final = {"farmer": "务农", "migrant_worker": "外出务工", "unemployed": "无业/失业", "employee": "职工",
                     "self_employed": "个体经营", "manager": "管理岗位", "retired": "退休", "student": "在读学生",
                     "other": "其他"}
HEALTH: Final = {"healthy": "健康", "chronic_illness": "慢性病", "serious_illness": "重大疾病", "disabled": "残疾",
                 "unable_to_work": "丧失劳动能力"}
SUDDEN_EVENT: Final = {"natural_disaster": "自然灾害", "accident": "意外事故", "serious_illness": "重大疾病",
                       "death_of_earner": "家庭主要劳动力死亡", "other": "其他突发状况"}
FAMILY_TYPE: Final = {"": "无", "single_parent_bereaved": "单亲（因一方去世）", "divorced": "父母离异"}
APPLICANT: Final = {"student": "学生本人", "guardian": "监护人"}
VERIFY_METHOD: Final = {"document": "材料核验", "manual": "人工核查", "data_match": "部门数据比对"}
OBJECTION_OUTCOME: Final = {"dismissed": "异议不成立（维持认定）", "upheld": "异议成立（重新认定）",
                             "revoked": "认定资格已取消，异议随之终结"}
OBJECTION_STATUS: Final = {"open": "待处理", "resolved": "已处理", "upheld": "成立", "dismissed": "不成立",
                            "superseded": "已终结"}
PROGRAMME: Final = {"national_grant": "国家助学金", "tuition_waiver": "免学费", "accommodation_subsidy": "住宿费补助",
                    "provincial_grant": "省级助学金", "emergency_aid": "应急资助"}
PLAN_ITEM: Final = {"study_planning": "学业规划", "psychological_support": "心理支持", "skills": "技能提升",
                    "employment_guidance": "就业指导", "labour_education": "劳动教育"}
OWNER: Final = {"student_affairs": "学工部门", "academic_affairs": "教务部门", "counselling": "心理中心",
                "employment": "就业部门", "youth_league": "共青团"}
EXEMPTION_GROUND: Final = {"sufficient_basis": "认定依据充分", "low_amount": "资助金额较小", "urgent": "情况紧急"}
FINDING: Final = {"consistent": "情况属实", "inconsistent": "情况不符"}
SOURCE: Final = {"civil_affairs": "民政", "rural_revitalisation": "乡村振兴", "trade_union": "总工会",
                 "disability_federation": "残联", "veterans_affairs": "退役军人事务", "document": "证明材料",
                 "manual": "人工核查"}


def all_labels() -> dict[str, object]:
    """Everything the pages' scripts translate, as one JSON object embedded in each page."""
    return {
        "status": STATUS, "awaiting": AWAITING, "steps": STEPS, "level": LEVEL, "category": CATEGORY,
        "stage": STAGE, "relation": RELATION, "occupation": OCCUPATION, "health": HEALTH,
        "sudden_event": SUDDEN_EVENT, "family_type": FAMILY_TYPE, "applicant": APPLICANT,
        "verify_method": VERIFY_METHOD, "objection_outcome": OBJECTION_OUTCOME, "objection_status": OBJECTION_STATUS,
        "programme": PROGRAMME, "exemption_ground": EXEMPTION_GROUND,
        "plan_item": PLAN_ITEM, "owner": OWNER, "finding": FINDING, "source": SOURCE,
        "event": EVENT_LABELS, "role": ROLE_LABELS,
    }
