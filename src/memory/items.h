/* Short-term memory items (the "items" projection, items.c) and hybrid
 * search over them (search.c). docs/memory.md, "Items and search". */
#ifndef BUREAU_MEMORY_ITEMS_H
#define BUREAU_MEMORY_ITEMS_H

#define MEMORY_ITEM_MAX_TEXT (64 * 1024) /* bytes of an item's text */
#define MEMORY_ITEM_TTL_DAYS 30          /* an item expires this long after it occurred */

#endif
