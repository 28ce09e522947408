"""Korean readings of numbers, and the numeric slots of the sentence bank.

Every slot returns a label fragment in AI Hub notation: `(spelling)/(pronunciation)`, where the
pronunciation side is what the synthesiser speaks.
"""

import numpy as np

SINO_DIGITS = "영일이삼사오육칠팔구"
# digit-by-digit readings (phone numbers, order numbers) say 공 for zero
SPOKEN_DIGITS = "공일이삼사오육칠팔구"
NATIVE_ONES = ["", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉"]
NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]
MONTHS = {6: "유월", 10: "시월"}  # the two irregular month names
WEEKDAYS = ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일"]


def sino(n: int) -> str:
    """Sino-Korean reading, spaced by 만 groups as Korean writes it: 35000 -> 삼만 오천."""
    if n == 0:
        return SINO_DIGITS[0]
    groups = []
    for unit in ["", "만", "억", "조"]:
        n, group = divmod(n, 10000)
        if group:
            # 만 alone, never 일만; 일억 and 일조 keep their 일
            words = "" if (unit == "만" and group == 1) else _sino_below_10000(group)
            groups.append(words + unit)
        if n == 0:
            break
    return " ".join(reversed(groups))


def _sino_below_10000(n: int) -> str:
    words = ""
    for place, name in [(1000, "천"), (100, "백"), (10, "십"), (1, "")]:
        digit = n // place % 10
        if digit:
            # 천, 백, 십 drop a leading 일
            words += ("" if digit == 1 and name else SINO_DIGITS[digit]) + name
    return words


def native(n: int) -> str:
    """Native Korean count before a counter (1-99): 1 -> 한, 20 -> 스무, 23 -> 스물세."""
    if n == 20:
        return "스무"
    return NATIVE_TENS[n // 10] + NATIVE_ONES[n % 10]


def digits(text: str) -> str:
    return "".join(SPOKEN_DIGITS[int(c)] for c in text)


def dual(spelling: str, pronunciation: str) -> str:
    return f"({spelling})/({pronunciation})"


def sino_counter(n: int, counter: str) -> str:
    return dual(f"{n}{counter}", f"{sino(n)} {counter}")


def native_counter(n: int, counter: str) -> str:
    return dual(f"{n}{counter}", f"{native(n)} {counter}")


def phone(rng: np.random.Generator) -> str:
    kind = rng.integers(10)
    if kind < 6:
        groups = ["010", _random_digits(rng, 4, first="123456789"), _random_digits(rng, 4)]
    elif kind < 8:
        groups = ["02", _random_digits(rng, 3, first="23456789"), _random_digits(rng, 4)]
    else:
        groups = [str(rng.choice([1588, 1577, 1644])), _random_digits(rng, 4)]
    return dual("-".join(groups), " ".join(digits(g) for g in groups))


def _random_digits(rng: np.random.Generator, n: int, first: str = "0123456789") -> str:
    head = first[rng.integers(len(first))]
    return head + "".join(str(d) for d in rng.integers(0, 10, n - 1))


def order_number(rng: np.random.Generator) -> str:
    number = _random_digits(rng, int(rng.integers(8, 12)), first="123456789")
    return dual(number, digits(number))


def amount(rng: np.random.Generator) -> str:
    won = int(rng.integers(5, 400)) * 1000 + int(rng.choice([0, 0, 500]))
    return dual(f"{won:,}원", f"{sino(won)} 원")


def small_amount(rng: np.random.Generator) -> str:
    won = int(rng.integers(1, 13)) * 500
    return dual(f"{won:,}원", f"{sino(won)} 원")


def clock(rng: np.random.Generator) -> str:
    """A time of day: hours are read in native Korean, minutes in Sino-Korean."""
    hour = int(rng.integers(1, 13))
    minute = int(rng.choice([0, 0, 10, 15, 20, 30, 30, 40, 45, 50]))
    if minute == 0:
        return native_counter(hour, "시")
    return dual(f"{hour}시 {minute}분", f"{native(hour)} 시 {sino(minute)} 분")


def date(rng: np.random.Generator) -> str:
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    month_reading = MONTHS.get(month, sino(month) + "월")
    return dual(f"{month}월 {day}일", f"{month_reading} {sino(day)} 일")


def percent(rng: np.random.Generator) -> str:
    value = int(rng.choice([3, 5, 10, 15, 20, 30, 50]))
    return dual(f"{value}%", f"{sino(value)} 퍼센트")


def shoe_size(rng: np.random.Generator) -> str:
    size = int(rng.integers(44, 57)) * 5
    return dual(str(size), sino(size))


def choice_of(items: list[str]):
    """A slot that picks one of `items`."""
    return lambda rng: items[rng.integers(len(items))]


def sino_slot(counter: str, low: int, high: int):
    return lambda rng: sino_counter(int(rng.integers(low, high + 1)), counter)


def native_slot(counter: str, low: int, high: int):
    return lambda rng: native_counter(int(rng.integers(low, high + 1)), counter)


SLOTS = {
    "phone": phone,
    "order_no": order_number,
    "amount": amount,
    "small_amount": small_amount,
    "time": clock,
    "date": date,
    "percent": percent,
    "weekday": choice_of(WEEKDAYS),
    "day_of_month": sino_slot("일", 1, 28),
    "days": sino_slot("일", 2, 14),
    "weeks": sino_slot("주", 1, 6),
    "months": sino_slot("개월", 2, 12),
    "years": sino_slot("년", 1, 5),
    "minutes": sino_slot("분", 10, 50),
    "floor": sino_slot("층", 2, 15),
    "building": sino_slot("동", 101, 112),
    "page": sino_slot("쪽", 12, 240),
    "grade": sino_slot("학년", 1, 6),
    "score": lambda rng: sino_counter(int(rng.integers(50, 95)) * 10, "점"),
    "size": shoe_size,
    "count": native_slot("개", 1, 5),
    "books": native_slot("권", 2, 6),
    "copies": native_slot("부", 2, 5),
    "people": native_slot("명", 2, 30),
}
