import unicodedata

import pytest

from whisper_ko.text import (
    FILLER_POLICIES,
    MASKED_POLICIES,
    SCORING,
    SIDES,
    TranscriptError,
    as_written,
    normalize,
    nospace,
)

# (raw label, spelling side, pronunciation side), written the way AI Hub telephone (571) and
# KsponSpeech transcribers write them.
CASES = [
    # the reference's notation table, one row each
    ("(70%)/(칠십 퍼센트) 할인됩니다", "70% 할인됩니다", "칠십 퍼센트 할인됩니다"),
    ("(3시)/(세 시)에 오세요", "3시에 오세요", "세 시에 오세요"),
    (
        "(010-1234-5678)/(공일공 일이삼사 오육칠팔)로 주세요",
        "010-1234-5678로 주세요",
        "공일공 일이삼사 오육칠팔로 주세요",
    ),
    ("(3)(삼) 번 눌러 주세요", "3 번 눌러 주세요", "삼 번 눌러 주세요"),
    ("o/ n/ 네 그 접수는 완료됐어요", "네 그 접수는 완료됐어요", "네 그 접수는 완료됐어요"),
    ("그냥l/ 해 주세요", "그냥 해 주세요", "그냥 해 주세요"),
    ("어/ 음/ 아/ 그게 잘 모르겠어요", "어 음 아 그게 잘 모르겠어요", "어 음 아 그게 잘 모르겠어요"),
    ("모+ 몬 소리야", "모 몬 소리야", "모 몬 소리야"),
    ("*좋아 보여요", "좋아 보여요", "좋아 보여요"),
    ("@웃음 네 맞아요", "네 맞아요", "네 맞아요"),
    ("(NO:) 네 고객님", "네 고객님", "네 고객님"),
    ("(SN:) 성함이 어떻게 되세요?", "성함이 어떻게 되세요?", "성함이 어떻게 되세요?"),
    ("&이름& 고객님 맞으시죠?", "고객님 맞으시죠?", "고객님 맞으시죠?"),
    ("@이름1 님 앞으로 접수됐습니다", "님 앞으로 접수됐습니다", "님 앞으로 접수됐습니다"),
    # dual transcriptions: spacing around the slash, several per line, symbols on the spelling side
    ("(10시 30분) / (열 시 삼십 분)에 방문하세요", "10시 30분에 방문하세요", "열 시 삼십 분에 방문하세요"),
    ("(5%)(오 퍼센트) 적립돼요", "5% 적립돼요", "오 퍼센트 적립돼요"),
    (
        "수강료는 (244,500원)/(이십사만 사천오백 원)이고 (9월 7일)/(구월 칠 일)까지 결제하시면 "
        "(10%)/(십 퍼센트) 할인이 적용됩니다",
        "수강료는 244,500원이고 9월 7일까지 결제하시면 10% 할인이 적용됩니다",
        "수강료는 이십사만 사천오백 원이고 구월 칠 일까지 결제하시면 십 퍼센트 할인이 적용됩니다",
    ),
    ("(10:30)/(열 시 반)까지 오시면 돼요", "10:30까지 오시면 돼요", "열 시 반까지 오시면 돼요"),
    ("금리는 (3.5%)/(삼 점 오 퍼센트)입니다", "금리는 3.5%입니다", "금리는 삼 점 오 퍼센트입니다"),
    ("(KT)/(케이티) 인터넷 해지하려고요", "KT 인터넷 해지하려고요", "케이티 인터넷 해지하려고요"),
    ("(A/S)/(에이에스) 접수했는데요", "A/S 접수했는데요", "에이에스 접수했는데요"),
    ("(1/2)/(이분의 일)만 환불돼요", "1/2만 환불돼요", "이분의 일만 환불돼요"),
    (
        "(2023/03/16)/(이천이십삼 년 삼월 십육 일)에 가입하셨네요",
        "2023/03/16에 가입하셨네요",
        "이천이십삼 년 삼월 십육 일에 가입하셨네요",
    ),
    ("(C++)/(씨 플플) 과정 있나요?", "C++ 과정 있나요?", "씨 플플 과정 있나요?"),
    (
        "(+82-10-1234-5678)/(플러스 팔이 일공 일이삼사 오육칠팔)로 걸어 주세요",
        "+82-10-1234-5678로 걸어 주세요",
        "플러스 팔이 일공 일이삼사 오육칠팔로 걸어 주세요",
    ),
    ("(1+1)/(원 플러스 원) 행사 상품이에요", "1+1 행사 상품이에요", "원 플러스 원 행사 상품이에요"),
    ("(*)/(별표) 누르시고 (114)/(일일사) 누르세요", "* 누르시고 114 누르세요", "별표 누르시고 일일사 누르세요"),
    (
        "(www.gov.kr)/(더블유 더블유 더블유 점 고브 점 케이알)에서 신청하세요",
        "www.gov.kr에서 신청하세요",
        "더블유 더블유 더블유 점 고브 점 케이알에서 신청하세요",
    ),
    (
        "(abc@naver.com)/(에이비씨 골뱅이 네이버 닷 컴)으로 보내 주세요",
        "abc@naver.com으로 보내 주세요",
        "에이비씨 골뱅이 네이버 닷 컴으로 보내 주세요",
    ),
    ("( 2대 )/( 두 대 )까지 돼요", "2대까지 돼요", "두 대까지 돼요"),
    # KsponSpeech eval lines: markers on both sides of duals, sentence punctuation kept
    (
        "그럼 (20년)/(이십 년) 전+ 전처럼 이메일로 l/ 소통하면 되잖아. l/",
        "그럼 20년 전 전처럼 이메일로 소통하면 되잖아.",
        "그럼 이십 년 전 전처럼 이메일로 소통하면 되잖아.",
    ),
    (
        "응/ 발자국 소리만 들려도 짖는데. (내가)/(내) 짖지 마 하면은 또",
        "응 발자국 소리만 들려도 짖는데. 내가 짖지 마 하면은 또",
        "응 발자국 소리만 들려도 짖는데. 내 짖지 마 하면은 또",
    ),
    ("(3시)/(세 시)+ (3시)/(세 시)쯤 갈게요", "3시 3시쯤 갈게요", "세 시 세 시쯤 갈게요"),
    ("(3시)/(세 시)n/ 맞죠?", "3시 맞죠?", "세 시 맞죠?"),
    # event tags: any case, standalone, glued after a word or punctuation, or before a word
    ("N/ B/ 네", "네", "네"),
    ("u/ i/ 알겠습니다 L/", "알겠습니다", "알겠습니다"),
    (
        "혹시 통화가n/ 끊기면n/ 다시 전화 주실 수 있나요?",
        "혹시 통화가 끊기면 다시 전화 주실 수 있나요?",
        "혹시 통화가 끊기면 다시 전화 주실 수 있나요?",
    ),
    ("어떤 내용으로 전화 주셨어요?l/", "어떤 내용으로 전화 주셨어요?", "어떤 내용으로 전화 주셨어요?"),
    ("b/네 알겠습니다", "네 알겠습니다", "네 알겠습니다"),
    ("네l/그럼 그렇게 할게요", "네 그럼 그렇게 할게요", "네 그럼 그렇게 할게요"),
    # fillers: any Hangul word, also set off by a comma
    ("음/, 그게 맞는지 모르겠어요", "음, 그게 맞는지 모르겠어요", "음, 그게 맞는지 모르겠어요"),
    ("그니까/ 제가 어제 주문한 거요", "그니까 제가 어제 주문한 거요", "그니까 제가 어제 주문한 거요"),
    (
        "주문 번호가 음/ (428011824)/(사이팔공일일팔이사) 맞으신가요?",
        "주문 번호가 음 428011824 맞으신가요?",
        "주문 번호가 음 사이팔공일일팔이사 맞으신가요?",
    ),
    # repetition and unclear marks, other sets' tags in the middle of a line
    ("그+ 그러니까 *배송이 안 왔다고요", "그 그러니까 배송이 안 왔다고요", "그 그러니까 배송이 안 왔다고요"),
    ("(SN:홍길동) 고객님 (NO:잡음) 맞으세요?", "고객님 맞으세요?", "고객님 맞으세요?"),
    ("(SN:김민지)(3시)/(세 시)에 예약하셨어요", "3시에 예약하셨어요", "세 시에 예약하셨어요"),
    # invisible characters and whitespace
    ("  여러   칸\t띄어쓰기\u00a0그리고\u3000전각  ", "여러 칸 띄어쓰기 그리고 전각", "여러 칸 띄어쓰기 그리고 전각"),
    ("\ufeff안녕하세요", "안녕하세요", "안녕하세요"),
    ("접수\u200b번호는 네\u200d 맞아요", "접수번호는 네 맞아요", "접수번호는 네 맞아요"),
    ("\u1100\u1161\u11a8 NFC", "각 NFC", "각 NFC"),
    ("(3\u1109\u1175)/(\u1109\u1166 \u1109\u1175)\u110b\u1166", "3시에", "세 시에"),
    ("n/ b/ o/", "", ""),
]


@pytest.mark.parametrize("raw,spelling,pronunciation", CASES)
def test_normalize_sides(raw, spelling, pronunciation):
    assert normalize(raw) == spelling
    assert normalize(raw, side="spelling") == spelling
    assert normalize(raw, side="pronunciation") == pronunciation


@pytest.mark.parametrize(
    "raw,dropped",
    [
        ("어/ 그게 음/ 잘 모르겠어요", "그게 잘 모르겠어요"),
        ("음/, 그게 맞는지 모르겠어요", "그게 맞는지 모르겠어요"),
        ("그게 음/.", "그게."),
        ("그니까/ 제가 (3시)/(세 시)에 갔거든요 어/", "제가 3시에 갔거든요"),
        # content slashes are not fillers, even under "drop"
        ("사과/배 세트 (1/2)/(이분의 일) 가격이에요", "사과/배 세트 1/2 가격이에요"),
        ("3월/4월 요금 확인해 주세요", "3월/4월 요금 확인해 주세요"),
    ],
)
def test_fillers_can_be_dropped(raw, dropped):
    assert normalize(raw, fillers="drop") == dropped


def test_dropped_fillers_inside_the_pronunciation_side():
    assert normalize("(3시)/(세 어/ 시)에", side="pronunciation", fillers="drop") == "세 시에"
    assert normalize("(3시)/(세 어/ 시)에", side="pronunciation") == "세 어 시에"


@pytest.mark.parametrize("raw", ["((xxx)) 주소는 여기예요", "주소는 ((그)) 서울시예요", "(()) 네"])
@pytest.mark.parametrize("side", SIDES)
def test_masked_span_drops_the_label_by_default(raw, side):
    with pytest.raises(TranscriptError) as err:
        normalize(raw, side=side)
    assert err.value.reason == "masked_span"


@pytest.mark.parametrize(
    "raw,spelling,pronunciation",
    [
        ("((xxx)) 주소는 여기예요", "주소는 여기예요", "주소는 여기예요"),
        ("주소는 ((그)) 서울시예요", "주소는 서울시예요", "주소는 서울시예요"),
        ("주소는((xx))예요", "주소는 예요", "주소는 예요"),
        ("((xx)) (3시)/(세 시)에 n/ 가요", "3시에 가요", "세 시에 가요"),
        ("((xx))", "", ""),
    ],
)
def test_masked_span_can_be_removed(raw, spelling, pronunciation):
    assert normalize(raw, masked="remove") == spelling
    assert normalize(raw, side="pronunciation", masked="remove") == pronunciation


@pytest.mark.parametrize(
    "raw",
    [
        "(3시/(세 시) 에",  # unbalanced
        "(70%)/(칠십 퍼센트",  # unterminated second half
        "닫는 괄호만)",  # stray `)`
        "(3시)/ 세 시에 가요",  # dual missing its second half
        "((3시)/(세 시))에",  # nested
        "(3시)/(세 (시))에",  # nested inside a side
        "네 (웃음) 맞아요",  # single aside: not in the notation, could be half a dual
        "(3시) (세 시)에",  # two parenthesised groups without a slash: could be two asides
        "(3시)/(세 시)/(삼 시)",  # a third side
        "(3시)/()에",  # empty pronunciation side
        "()/(세 시)에",  # empty spelling side
        "( )/(세 시)에",  # blank spelling side
        "주소는 www.gov.kr) 이에요",  # a URL does not hide a stray `)`
    ],
)
@pytest.mark.parametrize("side", SIDES)
def test_malformed_notation_is_a_reason_not_a_crash(raw, side):
    with pytest.raises(TranscriptError) as err:
        normalize(raw, side=side)
    assert err.value.reason == "malformed_notation"
    assert raw in str(err.value)


@pytest.mark.parametrize(
    "raw",
    [
        "club/ 이름이 뭐죠",
        "Bob/ 이라는 가게예요",
        "http://a.b/n/ 여기로 오세요",
        "https://example.com/b/l/?q=a+b* 접속하세요",
        "www.example.com/o/ 접속하세요",
        "/home/user/b/ 경로예요",
        "1/2 3/4 2023/03/16",
        "I/O 포트요 O/X 퀴즈요",
        "1/n 로 나눠요",
        "1+1 행사요",
        "문의는 help@site.com 으로",
    ],
)
def test_content_that_looks_like_notation_is_untouched(raw):
    assert normalize(raw) == raw
    assert normalize(raw, side="pronunciation", fillers="drop") == raw


def test_result_is_nfc_and_never_decomposed():
    decomposed = unicodedata.normalize("NFD", "(3시)/(세 시)에 접수됐습니다")
    assert len(decomposed) > len("(3시)/(세 시)에 접수됐습니다")
    out = normalize(decomposed)
    assert out == "3시에 접수됐습니다"
    assert unicodedata.is_normalized("NFC", out)


def test_zero_width_between_jamo_does_not_block_composition():
    assert normalize("\u1100\u200b\u1161 네") == "가 네"


@pytest.mark.parametrize(
    "kwargs",
    [{"side": "phonetic"}, {"fillers": "remove"}, {"masked": "keep"}],
)
def test_unknown_policy_is_a_programming_error(kwargs):
    with pytest.raises(ValueError) as err:
        normalize("네", **kwargs)
    assert not isinstance(err.value, TranscriptError)


def test_the_text_params_offer_exactly_the_policies_the_normaliser_knows():
    from typing import get_args

    from whisper_ko.config import Text

    fields = Text.model_fields
    assert get_args(fields["side"].annotation) == SIDES
    assert get_args(fields["fillers"].annotation) == FILLER_POLICIES
    assert get_args(fields["masked"].annotation) == MASKED_POLICIES


# ---------------------------------------------------------------- scoring normalisers


def test_scoring_registry_by_name():
    assert SCORING["raw"] is as_written
    assert SCORING["nospace"] is nospace
    with pytest.raises(KeyError, match="unknown scoring normaliser 'cer'"):
        SCORING["cer"]


def test_raw_scoring_only_composes_and_collapses_whitespace():
    assert as_written("  안녕  하세요,\t고객님! ") == "안녕 하세요, 고객님!"
    assert as_written("\u1100\u1161\u11a8") == "각"
    # scoring never interprets notation: that is normalize's job alone
    assert as_written("어/ (3시)/(세 시)") == "어/ (3시)/(세 시)"


@pytest.mark.parametrize(
    "a,b",
    [
        ("안녕 하세요", "안녕하세요"),  # spacing only
        ("접수 번호는 일 이 삼 이에요", "접수번호는 일이삼이에요"),
        ("네, 맞아요.", "네 맞아요"),  # punctuation only
        ("정말요?! 「네」…", "정말요 네"),
        ("010-1234-5678", "01012345678"),
    ],
)
def test_spacing_and_punctuation_differences_vanish_under_nospace(a, b):
    assert nospace(a) == nospace(b)
    assert as_written(a) != as_written(b)


def test_nospace_keeps_syllables_and_spoken_symbols():
    assert nospace("안녕 하세요, 고객님!  네?") == "안녕하세요고객님네"
    assert nospace("각") == "각" and len(nospace("\u1100\u1161\u11a8")) == 1
    # `%` is read (퍼센트), so dropping it is an error, not a punctuation difference
    assert nospace("70% 할인") != nospace("70 할인")
    assert nospace("abc@naver.com") == "abc@navercom"
