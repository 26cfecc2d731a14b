// SPDX-License-Identifier: Apache-2.0
// Doubly-linked lists threaded through elements of a vector by index. Elements keep their links
// inline, so push, remove and pop are O(1) and never allocate. `link_of(i)` returns element i's
// link.
#pragma once

#include <cstdint>
#include <limits>

namespace scale0::broker_detail {

inline constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();

struct list_link {
  std::uint32_t prev = npos;
  std::uint32_t next = npos;
  bool linked = false;
};

struct list_head {
  std::uint32_t head = npos;
  std::uint32_t tail = npos;
  std::uint32_t size = 0;
  bool empty() const noexcept { return size == 0; }
};

template <class LinkOf>
void list_push_back(list_head& l, std::uint32_t i, LinkOf&& link_of) {
  list_link& n = link_of(i);
  n.prev = l.tail;
  n.next = npos;
  n.linked = true;
  if (l.tail != npos)
    link_of(l.tail).next = i;
  else
    l.head = i;
  l.tail = i;
  ++l.size;
}

template <class LinkOf>
void list_push_front(list_head& l, std::uint32_t i, LinkOf&& link_of) {
  list_link& n = link_of(i);
  n.prev = npos;
  n.next = l.head;
  n.linked = true;
  if (l.head != npos)
    link_of(l.head).prev = i;
  else
    l.tail = i;
  l.head = i;
  ++l.size;
}

template <class LinkOf>
void list_remove(list_head& l, std::uint32_t i, LinkOf&& link_of) {
  list_link& n = link_of(i);
  if (!n.linked) return;
  if (n.prev != npos)
    link_of(n.prev).next = n.next;
  else
    l.head = n.next;
  if (n.next != npos)
    link_of(n.next).prev = n.prev;
  else
    l.tail = n.prev;
  n = list_link{};
  --l.size;
}

}  // namespace scale0::broker_detail
